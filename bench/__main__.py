"""Run the benchmarks: `python -m bench` (all), `python -m bench NAME [NAME ...]`, or
`python -m bench NAME --option ...` (options go to that benchmark's ``main``).

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


def run(argv: list[str]) -> None:
    # `python -m bench NAME --option ...` passes the options (and their values, as in
    # `--repeat 1`) on to that one benchmark: everything from the first option on is its.
    first = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    names, options = argv[:first], argv[first:]
    if options and len(names) != 1:
        sys.exit("options apply to one benchmark: python -m bench NAME --option ...")
    for name in names or available():
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}", flush=True)
        module.main(options)


if __name__ == "__main__":
    run(sys.argv[1:])
