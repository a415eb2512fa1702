"""The sample city: agencies, people and their records, for demos and tests."""
