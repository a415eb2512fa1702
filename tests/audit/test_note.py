"""C2SP signed notes, tlog checkpoints and verifier key strings."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from civicshare.audit.note import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    open_checkpoint,
    open_note,
    public_bytes,
)

ROOT = hashlib.sha256(b"root").digest()


def signer(name: str = "city.example/audit", seed: bytes = b"\x07" * 32) -> Signer:
    return Signer(name, Ed25519PrivateKey.from_private_bytes(seed))


def test_key_id_and_verifier_string_follow_the_spec() -> None:
    key = signer()
    public = public_bytes(key.private_key.public_key())
    expected_id = hashlib.sha256(b"city.example/audit\n\x01" + public).digest()[:4]
    text = str(key.verifier)
    name, hex_id, encoded = text.split("+")
    assert (name, hex_id) == ("city.example/audit", expected_id.hex())
    assert base64.b64decode(encoded) == b"\x01" + public
    assert Verifier.parse(text) == key.verifier


def test_checkpoint_note_layout() -> None:
    key = signer()
    note = key.sign(Checkpoint("city.example/audit", 42, ROOT).text())
    lines = note.split("\n")
    assert lines[:5] == ["city.example/audit", "42", base64.b64encode(ROOT).decode(), "", lines[4]]
    assert lines[4].startswith("\u2014 city.example/audit ")
    raw = base64.b64decode(lines[4].split(" ")[2])
    assert raw[:4] == key.verifier.key_id
    assert len(raw) == 68
    assert note.endswith("\n")
    assert open_checkpoint(note, key.verifier) == Checkpoint("city.example/audit", 42, ROOT)


def test_a_checkpoint_signed_by_another_key_is_rejected() -> None:
    forger = signer(seed=b"\x08" * 32)
    note = forger.sign(Checkpoint("city.example/audit", 42, ROOT).text())
    with pytest.raises(NoteError, match="not signed by"):
        open_checkpoint(note, signer().verifier)


def test_altered_text_or_signature_is_rejected() -> None:
    key = signer()
    note = key.sign(Checkpoint("city.example/audit", 42, ROOT).text())
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note.replace("\n42\n", "\n43\n"), key.verifier)
    head, _, sig = note.rpartition(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 1
    with pytest.raises(NoteError, match="does not verify"):
        open_note(head + " " + base64.b64encode(bytes(raw)).decode() + "\n", key.verifier)


def test_unknown_signatures_are_ignored_but_one_known_is_required() -> None:
    key, witness = signer(), signer("witness.example", b"\x09" * 32)
    note = key.sign(Checkpoint("city.example/audit", 1, ROOT).text())
    cosigned = note + witness.sign("x\n").splitlines()[-1] + "\n"
    assert open_checkpoint(cosigned, key.verifier).size == 1
    with pytest.raises(NoteError):
        open_note(Checkpoint("city.example/audit", 1, ROOT).text(), key.verifier)


@pytest.mark.parametrize(
    "text",
    [
        "origin\n01\nAAAA\n",
        "origin\n1\nnot-base64!\n",
        "origin\n1\n" + base64.b64encode(b"short").decode() + "\n",
        "origin\n1\n",
        "origin\n\n1\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n\u00b2\n" + base64.b64encode(ROOT).decode() + "\n",  # superscript two
        "origin\n\u0661\u0662\n" + base64.b64encode(ROOT).decode() + "\n",  # Arabic-Indic 12
    ],
)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    "key", ["", "a+b", "name+zz+AAAA", "name+00000000+" + base64.b64encode(b"\x01" * 33).decode()]
)
def test_malformed_verifier_keys_are_rejected(key: str) -> None:
    with pytest.raises(NoteError):
        Verifier.parse(key)


def test_checkpoint_for_another_origin_is_rejected() -> None:
    key = signer()
    note = key.sign(Checkpoint("other.example/log", 1, ROOT).text())
    with pytest.raises(NoteError, match=r"not 'city\.example/audit'"):
        open_checkpoint(note, key.verifier)


@given(seed=st.binary(min_size=32, max_size=32))
def test_any_verifier_key_string_parses_back(seed: bytes) -> None:
    verifier = signer(seed=seed).verifier
    assert Verifier.parse(str(verifier)) == verifier
