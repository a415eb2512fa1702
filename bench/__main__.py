"""Run the benchmarks: `python -m bench` (all) or `python -m bench NAME [NAME ...]`.

Each module in this folder with a ``main(argv)`` is a benchmark. It runs the hub and its
reference tool in the same run and prints the ratio; results go in BENCHMARKS.md by hand.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    folder = Path(__file__).parent
    return sorted(
        info.name for info in pkgutil.iter_modules([str(folder)]) if not info.name.startswith("_")
    )


def run(names: list[str]) -> None:
    for name in names or available():
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}", flush=True)
        module.main([])


if __name__ == "__main__":
    run(sys.argv[1:])
