"""The web portal: server-rendered pages for stewards, analysts, auditors and the public.

Pages call the same service functions as the API; templates only display what they are given.
"""
