"""Open protocols: Delta Sharing server and a CKAN-compatible open-data API."""
