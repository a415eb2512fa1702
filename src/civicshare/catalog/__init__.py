"""The catalog: datasets, their Table Schemas, search and the DCAT export."""
