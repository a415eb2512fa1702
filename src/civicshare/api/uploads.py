"""Uploaded files are spooled sealed, never as plaintext on disk.

Starlette's multipart parser keeps each uploaded file in a ``SpooledTemporaryFile``: in memory
up to 1 MiB, then in a plaintext temporary file for the rest of the request — personal values
of an upload would sit readable on the disk (and in its free blocks afterwards). Starlette has
no hook for the file it creates, so the parser class that ``Request.form()`` uses is replaced
by one that swaps each new, still empty file for a ``SealedSpool`` (AES-256-GCM chunks under a
key held only in memory). The API's ingest route and the portal's upload forms both read forms
through ``Request.form()``.
"""

from __future__ import annotations

from typing import Any, cast

from starlette import requests
from starlette.formparsers import MultiPartParser

from civicshare.storage.segments import SealedSpool


class SealedMultiPartParser(MultiPartParser):
    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        upload = self._current_part.file
        if upload is None:  # a plain form field
            return
        spooled = upload.file
        sealed = SealedSpool()
        upload.file = cast(Any, sealed)
        # Starlette closes the files it made when parsing fails: ours instead of its own.
        self._files_to_close_on_error[-1] = cast(Any, sealed)
        spooled.close()


def seal_uploads() -> None:
    """Make ``Request.form()`` spool uploads sealed (idempotent, process-wide)."""
    requests.MultiPartParser = SealedMultiPartParser  # type: ignore[attr-defined]
