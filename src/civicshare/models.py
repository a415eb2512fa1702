"""Imports every domain's ORM models so that ``Base.metadata`` knows all tables.

A domain is a subpackage of ``civicshare`` with a ``models.py``; it is found automatically, so
adding a domain needs no edit here.
"""

from __future__ import annotations

import importlib
import pkgutil

import civicshare


def domain_packages() -> list[str]:
    """Names of the domain subpackages (sorted, so discovery is deterministic)."""
    return sorted(info.name for info in pkgutil.iter_modules(civicshare.__path__) if info.ispkg)


def _import_models() -> None:
    for name in domain_packages():
        try:
            importlib.import_module(f"civicshare.{name}.models")
        except ModuleNotFoundError as exc:
            if exc.name != f"civicshare.{name}.models":
                raise


_import_models()
