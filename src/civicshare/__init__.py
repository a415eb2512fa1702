"""civicshare: a secure data-sharing hub for public-sector agencies."""

__version__ = "0.1.0"
