"""Data-sharing agreements, purposes, column treatments, row filters and objections."""
