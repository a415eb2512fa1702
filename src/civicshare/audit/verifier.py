"""An outside auditor's verifier: trusts only the hub's public key (and what it accepted before).

It fetches the signed checkpoint, checks the signature, downloads every record, recomputes the
Merkle root, checks consistency with the checkpoint it accepted last time (``--state``), and
names the first record that was altered, removed, reordered or forked. Proofs fetched from the
hub are only ever used through their verification: a lying hub cannot make a bad log pass.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx

from civicshare.audit import merkle
from civicshare.audit.merkle import HASH_SIZE, MemoryTree, ProofError
from civicshare.audit.note import Checkpoint, NoteError, Verifier, open_checkpoint
from civicshare.errors import CivicshareError, Forbidden, Invalid, Unavailable

_T = TypeVar("_T")


class LogSource(Protocol):
    """Where a verifier reads a log from: a hub over HTTP, or a local hub home."""

    def checkpoint(self) -> str: ...

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]: ...

    def inclusion(self, index: int, size: int) -> list[bytes]: ...

    def consistency(self, first: int, second: int) -> list[bytes]: ...


def audit_api(url: str) -> str:
    """The audit API under a hub's address, given as the hub, its ``/api/v1`` or the API itself."""
    base = url.rstrip("/")
    if base.endswith("/api/v1/audit"):
        return base
    if not base.endswith("/api/v1"):
        base += "/api/v1"
    return base + "/audit"


class HttpLogSource:
    """The hub's ``/api/v1/audit`` endpoints (records need an auditor's token)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=audit_api(url), headers=headers, timeout=timeout)

    def _get(self, path: str, **params: int) -> httpx.Response:
        try:
            response = self.client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise Unavailable(f"cannot reach the hub: {exc}", code="hub_unreachable") from exc
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise Unavailable(
                f"the hub answered {response.status_code} to {path}: {message}", code="hub_error"
            )
        return response

    def _parsed(self, path: str, read: Callable[[Any], _T], **params: int) -> _T:
        """``read`` applied to the JSON body; a body of another shape is the hub's error."""
        response = self._get(path, **params)
        try:
            return read(response.json())
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise Unavailable(
                f"the hub's answer to {path} is malformed ({type(exc).__name__})",
                code="hub_bad_response",
            ) from exc

    def checkpoint(self) -> str:
        return self._get("/checkpoint").text

    def entries(self, start: int, end: int) -> list[tuple[int, bytes]]:
        def read(body: Any) -> tuple[bool, list[tuple[int, bytes]]]:
            page = [(_index(e["index"]), _base64(e["leaf_input"])) for e in body["entries"]]
            return body.get("complete", True) is not False, page

        complete, page = self._parsed("/entries", read, start=start, end=end)
        contiguous = [index for index, _record in page] == list(range(start, start + len(page)))
        if not complete and not (page and contiguous):
            # Its gaps would read as records removed from the log: a false accusation.
            raise Forbidden(
                "this token reads only some records; verifying needs an auditor's token",
                code="auditor_token_required",
            )
        return page

    def inclusion(self, index: int, size: int) -> list[bytes]:
        def read(body: Any) -> list[bytes]:
            return [_base64(value) for value in body["audit_path"]]

        return self._parsed("/proof/inclusion", read, index=index, size=size)

    def consistency(self, first: int, second: int) -> list[bytes]:
        def read(body: Any) -> list[bytes]:
            return [_base64(value) for value in body["consistency"]]

        return self._parsed("/proof/consistency", read, first=first, second=second)

    def close(self) -> None:
        self.client.close()


def _index(value: Any) -> int:
    if type(value) is not int:
        raise TypeError("an index is not an integer")
    return value


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError("a hash or record is not a base64 string")
    return base64.b64decode(value, validate=True)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    size: int
    root: str | None
    problem: str | None = None  # bad_signature, missing, truncated, reordered, altered, fork
    first_bad_index: int | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AcceptedState:
    """What the verifier accepted last time: the signed note and every leaf hash under it."""

    note: str
    checkpoint: Checkpoint
    leaves: bytes

    def leaf(self, index: int) -> bytes:
        return self.leaves[index * HASH_SIZE : (index + 1) * HASH_SIZE]


def load_state(path: Path | None, verifier: Verifier) -> AcceptedState | None:
    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        note = data["checkpoint"]
        checkpoint = open_checkpoint(note, verifier)
        leaves = _leaves_path(path).read_bytes()
    except (OSError, ValueError, KeyError, TypeError, NoteError) as exc:
        raise Invalid(f"the state file {path} is unreadable: {exc}", code="bad_state") from exc
    # Longer leaves are those of a later run that stopped before replacing FILE (save_state
    # writes the leaves first); the log only grows, so their prefix is what FILE accepted.
    leaves = leaves[: checkpoint.size * HASH_SIZE]
    if len(leaves) != checkpoint.size * HASH_SIZE or _leaves_root(leaves) != checkpoint.root:
        # A damaged local file must not be reported as records the hub altered.
        raise Invalid(f"the state file {path} does not match its leaves", code="bad_state")
    return AcceptedState(note, checkpoint, leaves)


def _leaves_root(leaves: bytes) -> bytes:
    tree = MemoryTree()
    for start in range(0, len(leaves), HASH_SIZE):
        tree.append(leaves[start : start + HASH_SIZE])
    return tree.root()


def save_state(path: Path, note: str, checkpoint: Checkpoint, tree: MemoryTree) -> None:
    """Write the accepted checkpoint and its leaf hashes, each replaced atomically."""
    leaves = bytes(tree.levels[0][: checkpoint.size * HASH_SIZE])
    body = {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root": base64.b64encode(checkpoint.root).decode(),
        "checkpoint": note,
    }
    try:
        _write_atomically(_leaves_path(path), leaves)
        _write_atomically(path, (json.dumps(body, indent=2) + "\n").encode())
    except OSError as exc:
        raise Invalid(f"cannot write the state file {path}: {exc}", code="bad_state") from exc


def _leaves_path(path: Path) -> Path:
    return path.with_name(path.name + ".leaves")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class _Finding:
    index: int
    problem: str
    message: str


def verify_log(
    source: LogSource,
    verifier: Verifier,
    *,
    state: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Verdict:
    """Check the whole log against the signed checkpoint (and the accepted state, if any)."""
    note = source.checkpoint()
    try:
        checkpoint = open_checkpoint(note, verifier)
    except NoteError as exc:
        return Verdict(False, 0, None, "bad_signature", None, f"checkpoint rejected: {exc}")
    root = base64.b64encode(checkpoint.root).decode()
    accepted = load_state(state, verifier)
    if accepted is not None and checkpoint.size < accepted.checkpoint.size:
        size = accepted.checkpoint.size
        return Verdict(
            False,
            checkpoint.size,
            root,
            "truncated",
            checkpoint.size,
            f"the log shrank from {size} records (accepted before) to {checkpoint.size}",
        )
    tree, findings = _download(source, checkpoint.size, progress)
    findings += _compare_with_accepted(source, checkpoint, tree, accepted)
    if tree.root(tree.size) != checkpoint.root or tree.size < checkpoint.size:
        findings += _locate_altered(source, checkpoint, tree)
    if findings:
        # At one index, a fork says more than what it caused (an altered or moved record).
        first = min(findings, key=lambda finding: (finding.index, finding.problem != "fork"))
        return Verdict(False, checkpoint.size, root, first.problem, first.index, first.message)
    if state is not None:
        save_state(state, note, checkpoint, tree)
    return Verdict(True, checkpoint.size, root, None, None, f"{checkpoint.size} records verified")


def _download(
    source: LogSource, size: int, progress: Callable[[int, int], None] | None
) -> tuple[MemoryTree, list[_Finding]]:
    """Every record in order, stopping at the first gap; records name their own index."""
    tree, findings = MemoryTree(), []
    while tree.size < size:
        page = source.entries(tree.size, size)
        if not page:
            break
        for index, record in page:
            if tree.size == size:
                break  # records beyond the signed checkpoint are not part of what is verified
            if index != tree.size:
                findings.append(_Finding(tree.size, "missing", f"record {tree.size} is missing"))
                return tree, findings
            claimed = _claimed_index(record)
            if isinstance(claimed, int) and claimed != index:
                message = f"record {index} carries index {claimed}: records were moved"
                findings.append(_Finding(index, "reordered", message))
            elif claimed is None:
                message = f"record {index} is not a well-formed record"
                findings.append(_Finding(index, "altered", message))
            tree.append(merkle.leaf_hash(record))
        if progress is not None:
            progress(tree.size, size)
    if tree.size < size:
        findings.append(
            _Finding(
                tree.size,
                "truncated",
                f"the log ends at record {tree.size} but its checkpoint covers {size}",
            )
        )
    return tree, findings


def _claimed_index(record: bytes) -> object:
    try:
        body = json.loads(record)
    except ValueError:
        return None
    return body.get("index") if isinstance(body, dict) else None


def _compare_with_accepted(
    source: LogSource, checkpoint: Checkpoint, tree: MemoryTree, accepted: AcceptedState | None
) -> list[_Finding]:
    """The new checkpoint must extend the accepted one; the old records must be unchanged."""
    if accepted is None:
        return []
    old = accepted.checkpoint
    changed = next(
        (i for i in range(min(old.size, tree.size)) if tree.leaf(i) != accepted.leaf(i)), None
    )
    try:
        proof = source.consistency(old.size, checkpoint.size)
        merkle.verify_consistency(old.size, checkpoint.size, old.root, checkpoint.root, proof)
    except (ProofError, CivicshareError) as exc:
        # A signed head that does not extend the accepted one is a fork, whatever else differs.
        return [
            _Finding(
                old.size if changed is None else changed,
                "fork",
                f"the checkpoint of size {checkpoint.size} does not extend the one of size "
                f"{old.size} accepted before ({exc})",
            )
        ]
    if changed is not None:
        message = f"record {changed} differs from the one accepted before"
        return [_Finding(changed, "altered", message)]
    return []


def _locate_altered(source: LogSource, checkpoint: Checkpoint, tree: MemoryTree) -> list[_Finding]:
    """Binary search for the longest prefix of the downloaded records that the signed root
    provably extends (a consistency proof verifies against our own prefix root); the record
    right after it is the first one altered."""
    good, bad = 0, tree.size
    if bad == 0 or _prefix_holds(source, checkpoint, tree, bad):
        return []
    while bad - good > 1:
        middle = (good + bad) // 2
        if _prefix_holds(source, checkpoint, tree, middle):
            good = middle
        else:
            bad = middle
    return [_Finding(good, "altered", f"record {good} was altered (its hash is not in the log)")]


def _prefix_holds(source: LogSource, checkpoint: Checkpoint, tree: MemoryTree, size: int) -> bool:
    if size == checkpoint.size:
        return tree.root(size) == checkpoint.root
    try:
        proof = source.consistency(size, checkpoint.size)
        merkle.verify_consistency(size, checkpoint.size, tree.root(size), checkpoint.root, proof)
    except ProofError:
        return False  # a hub that cannot answer raises: no guessed index from a missing proof
    return True


def prove_inclusion(
    source: LogSource, verifier: Verifier, index: int
) -> tuple[Checkpoint, bytes, list[bytes]]:
    """Record ``index``, its audit path, and the signed checkpoint it was verified against."""
    checkpoint = open_checkpoint(source.checkpoint(), verifier)
    if not 0 <= index < checkpoint.size:
        raise Invalid(
            f"record {index} is not in the signed log of {checkpoint.size} records",
            code="bad_proof_range",
        )
    page = source.entries(index, index + 1)
    if not page or page[0][0] != index:
        raise Invalid(f"record {index} is missing or not readable", code="record_unavailable")
    record = page[0][1]
    path = source.inclusion(index, checkpoint.size)
    try:
        merkle.verify_inclusion(
            index, checkpoint.size, merkle.leaf_hash(record), path, checkpoint.root
        )
    except ProofError as exc:
        raise Invalid(
            f"record {index} is not proven by the signed checkpoint: {exc}",
            code="inclusion_failed",
        ) from exc
    return checkpoint, record, path
