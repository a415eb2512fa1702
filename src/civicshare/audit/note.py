"""C2SP signed notes with Ed25519 (c2sp.org/signed-note) carrying tlog checkpoints
(c2sp.org/tlog-checkpoint), and the ``name+keyid+key`` verifier key strings of Go's
``golang.org/x/mod/sumdb/note``, so existing transparency-log tooling reads them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from civicshare.audit.merkle import HASH_SIZE

ED25519 = 0x01  # the signed-note signature type of Ed25519
_KEY_NAME = re.compile(r"^[^\s+]+$")
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 16


class NoteError(ValueError):
    """A note or key that is malformed, or whose signature does not verify."""


def check_key_name(name: str) -> str:
    if not _KEY_NAME.fullmatch(name):
        raise NoteError("a key name must be non-empty, without spaces or '+'")
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || public key)[:4], as signed-note recommends."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Verifier:
    """A public key as published: ``name+hex(key id)+base64(0x01 || public key)``."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def __str__(self) -> str:
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        parts = text.strip().split("+", 2)  # the base64 key may itself contain "+"
        if len(parts) != 3:
            raise NoteError("a verifier key reads name+keyid+base64key")
        name, hex_id, encoded = parts
        check_key_name(name)
        try:
            raw = base64.b64decode(encoded, validate=True)
            expected_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise NoteError("the verifier key is not valid hex and base64") from exc
        if len(raw) != 33 or raw[0] != ED25519:
            raise NoteError("the verifier key is not an Ed25519 key")
        verifier = cls(name, raw[1:])
        if len(hex_id) != 8 or verifier.key_id != expected_id:
            raise NoteError("the verifier key's id does not match its name and key")
        return verifier

    def verify(self, text: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, public_bytes(self.private_key.public_key()))

    def sign(self, text: str) -> str:
        """The signed note: the text, a blank line and one signature line."""
        if not text.endswith("\n"):
            raise NoteError("a note's text ends with a newline")
        signature = self.private_key.sign(text.encode())
        encoded = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {encoded}\n"


def open_note(note: str, verifier: Verifier) -> str:
    """The note's text, once a signature by ``verifier`` checks; ``NoteError`` otherwise.

    Signatures by other keys are ignored (C2SP: they may be witnesses' cosignatures); a
    signature that claims to be by this key but fails to verify rejects the whole note.
    """
    text, signatures = _split(note)
    verified = False
    for line in signatures:
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise NoteError("a signature line is not valid base64") from exc
        if len(raw) < 5 or name != verifier.name or raw[:4] != verifier.key_id:
            continue
        if not verifier.verify(text.encode(), raw[4:]):
            raise NoteError(f"the signature by {name} does not verify")
        verified = True
    if not verified:
        raise NoteError(f"the note is not signed by {verifier.name}+{verifier.key_id.hex()}")
    return text


def _split(note: str) -> tuple[str, list[str]]:
    if any(ord(char) < 0x20 and char != "\n" for char in note):
        raise NoteError("a note must not contain control characters")
    head, separator, tail = note.rpartition("\n\n")
    if not separator or not tail.endswith("\n"):
        raise NoteError("a signed note is text, a blank line, then signature lines")
    lines = tail[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES or not all(line.startswith(SIGNATURE_PREFIX) for line in lines):
        raise NoteError("malformed signature lines")
    return head + "\n", lines


@dataclass(frozen=True)
class Checkpoint:
    """The tree head a log commits to: origin, size and root hash (c2sp.org/tlog-checkpoint)."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
            raise NoteError("a checkpoint is at least three non-empty lines")
        origin, size_text, root_text = lines[0], lines[1], lines[2]
        # ASCII only: str.isdigit() also accepts "²" (which int() refuses) and "١٢" (12).
        digits = size_text.isascii() and size_text.isdigit()
        if not digits or (size_text.startswith("0") and size_text != "0"):
            raise NoteError("the checkpoint's tree size is not a decimal number")
        try:
            root = base64.b64decode(root_text, validate=True)
        except binascii.Error as exc:
            raise NoteError("the checkpoint's root hash is not base64") from exc
        if len(root) != HASH_SIZE:
            raise NoteError("the checkpoint's root hash is not 32 bytes")
        return cls(origin, int(size_text), root)


def open_checkpoint(note: str, verifier: Verifier, *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint and parse it; the origin must be the key's name."""
    checkpoint = Checkpoint.parse(open_note(note, verifier))
    expected = origin or verifier.name
    if checkpoint.origin != expected:
        raise NoteError(f"the checkpoint is for log '{checkpoint.origin}', not '{expected}'")
    return checkpoint
