"""Statistical disclosure control for aggregate-only agreements.

Each cell of a grouped count carries its true count ``n`` and a cell key: the sum, modulo 2^32,
of the record keys of the rows in it (record keys are a keyed hash of each record, fixed for a
dataset). Then, as in the Australian Bureau of Statistics' TableBuilder:

* cells with 1 <= n < min_cell are suppressed (primary suppression);
* complementary suppression: in every line of the table (the cells that share all keys but
  one), a single suppressed cell is joined by the smallest released cell of that line, so
  subtracting released cells from a line total cannot recover it;
* every released count is perturbed by a deterministic amount in -2..+2 looked up from
  (n, cell key), mean 0; the same records always give the same published value, so asking
  again does not average the noise away, and two queries whose cells differ by one person have
  unrelated cell keys, so their difference does not reveal that person.

Sums and averages of a numeric column (``released_magnitude``) are released only for cells
whose count is released and whose column has at least ``min_cell`` non-null values; a cell
where one record holds more than ``DOMINANCE_SHARE`` of the column's total magnitude is
suppressed (the sum would be close to that one value); the rest get deterministic noise of up
to half the cell's largest absolute value, derived from the cell key, so a sum differenced
across two queries never gives the one differing value exactly.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CELL_KEY_MODULUS = 2**32
# Perturbation table (a cumulative distribution over -2..+2): mean 0, variance 1.2.
_OFFSETS = (-2, -1, 0, 1, 2)
_CUMULATIVE = (0.1, 0.3, 0.7, 0.9, 1.0)


def perturbation(count: int, cell_key: int) -> int:
    """The deterministic noise added to a released count (the ABS "p-table" lookup)."""
    mixed = (cell_key * 2654435761 + count * 40503 + 0x9E3779B9) % CELL_KEY_MODULUS
    position = mixed / CELL_KEY_MODULUS
    return _OFFSETS[bisect.bisect_right(_CUMULATIVE, position)]


def released_count(count: int, cell_key: int, min_cell: int) -> int:
    """The published value of a cell that is not suppressed (never below ``min_cell``)."""
    return max(min_cell, count + perturbation(count, cell_key % CELL_KEY_MODULUS))


# A sum or average is suppressed when one record holds more than this share of the cell's
# total absolute value (a (1, k) dominance rule with k = 50%).
DOMINANCE_SHARE = 0.5
# Noise on a released sum: u * (largest absolute value in the cell), u in [-0.5, 0.5).
MAGNITUDE_NOISE = 0.5


def magnitude_noise(cell_key: int, column: str) -> float:
    """A deterministic value in [-MAGNITUDE_NOISE, MAGNITUDE_NOISE) for (cell, column)."""
    seed = f"{cell_key % CELL_KEY_MODULUS}:{column}".encode()
    fraction = int.from_bytes(hashlib.blake2b(seed, digest_size=8).digest(), "big") / 2**64
    return (fraction * 2 - 1) * MAGNITUDE_NOISE


def magnitude_suppression(
    *, nonnull: int, largest: float | None, total_magnitude: float | None, min_cell: int
) -> str | None:
    """Why a cell's sum/average of a column may not be released (None: it may)."""
    if nonnull < min_cell:
        return "primary"
    if largest and total_magnitude and largest > DOMINANCE_SHARE * total_magnitude:
        return "dominance"
    return None


def released_magnitude(total: float, largest: float, cell_key: int, column: str) -> float:
    """The published sum of a releasable cell: the true sum plus bounded, keyed noise."""
    return float(total) + magnitude_noise(cell_key, column) * float(largest)


@dataclass
class Cell:
    keys: tuple[Any, ...]
    count: int
    cell_key: int
    suppressed: str | None = None  # "primary" | "complementary"
    extra: dict[str, Any] = field(default_factory=dict)


def suppress(cells: Sequence[Cell], *, min_cell: int) -> None:
    """Mark primary and complementary suppressions in place."""
    for cell in cells:
        if 0 < cell.count < min_cell:
            cell.suppressed = "primary"
    dimensions = len(cells[0].keys) if cells else 0
    changed = True
    while changed:
        changed = False
        for dimension in range(max(dimensions, 1) if cells else 0):
            for line in _lines(cells, dimension, dimensions).values():
                changed |= _protect_line(line)


def _lines(
    cells: Sequence[Cell], dimension: int, dimensions: int
) -> dict[tuple[Any, ...], list[Cell]]:
    lines: dict[tuple[Any, ...], list[Cell]] = defaultdict(list)
    for cell in cells:
        others = cell.keys[:dimension] + cell.keys[dimension + 1 :] if dimensions else ()
        lines[others].append(cell)
    return lines


def _protect_line(line: list[Cell]) -> bool:
    hidden = [cell for cell in line if cell.suppressed]
    shown = [cell for cell in line if not cell.suppressed]
    if len(hidden) != 1 or not shown:
        return False
    smallest = min(shown, key=lambda cell: (cell.count, repr(cell.keys)))
    smallest.suppressed = "complementary"
    return True
