"""What a process holds open, read through /proc (for tests that look for plaintext on disk)."""

from __future__ import annotations

from pathlib import Path


def open_files(pid: int) -> list[Path]:
    """Regular files the process holds open, deleted ones included (readable through /proc)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if fd.is_file():
                found.append(fd)
        except OSError:
            continue  # closed meanwhile
    return found
