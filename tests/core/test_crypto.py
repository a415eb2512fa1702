"""Master key files, key wrapping, tokens and passwords."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicshare import crypto
from civicshare.errors import ConfigurationError, Invalid


def test_master_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    assert crypto.create_master_key(path) is True
    first = path.read_bytes()
    assert crypto.create_master_key(path) is False
    assert path.read_bytes() == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(crypto.read_master_key(path)) == 32


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "not a civicshare master key file"),
        ("civicshare-master-key-v1\n!!!notbase64\n", "malformed"),
        ("civicshare-master-key-v1\nAAAA\n", "wrong length"),
        ("something-else\nAAAA\n", "not a civicshare master key file"),
    ],
)
def test_malformed_master_key_files_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "master.key"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        crypto.read_master_key(path)


def test_missing_master_key_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="civicshare init"):
        crypto.read_master_key(tmp_path / "absent.key")


@given(key=st.binary(min_size=32, max_size=32), context=st.binary(max_size=64))
def test_wrapped_keys_unwrap_only_under_the_same_context(key: bytes, context: bytes) -> None:
    provider = crypto.LocalKeyProvider(bytes(range(32)))
    wrapped = provider.wrap(key, context=context)
    assert key not in wrapped
    assert provider.unwrap(wrapped, context=context) == key
    with pytest.raises(Invalid, match="failed authentication"):
        provider.unwrap(wrapped, context=context + b"x")


@given(data=st.binary(min_size=1, max_size=256), flip=st.integers(min_value=0))
def test_any_altered_ciphertext_byte_fails_authentication(data: bytes, flip: int) -> None:
    key = bytes(32)
    sealed = bytearray(crypto.aead_encrypt(key, data, context=b"c"))
    sealed[flip % len(sealed)] ^= 0x01
    with pytest.raises(Invalid):
        crypto.aead_decrypt(key, bytes(sealed), context=b"c")


def test_other_master_key_cannot_unwrap() -> None:
    wrapped = crypto.LocalKeyProvider(bytes(32)).wrap(b"k" * 32, context=b"agency:1")
    with pytest.raises(Invalid):
        crypto.LocalKeyProvider(bytes([1]) * 32).unwrap(wrapped, context=b"agency:1")


def test_api_tokens_are_256_bit_and_hashed() -> None:
    token = crypto.new_api_token()
    assert token.startswith(crypto.TOKEN_PREFIX)
    assert len(token) >= len(crypto.TOKEN_PREFIX) + 43  # 32 bytes, url-safe base64
    digest = crypto.hash_token(token)
    assert token not in digest
    assert len(digest) == 64
    assert crypto.token_matches(token, digest)
    assert not crypto.token_matches(token + "x", digest)
    assert crypto.new_api_token() != token


def test_passwords_are_argon2id_and_verify() -> None:
    stored = crypto.hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert crypto.verify_password("correct horse battery staple", stored)
    assert not crypto.verify_password("wrong horse battery staple", stored)
    assert not crypto.verify_password("anything", "not-a-hash")
