"""Site secrets: from a private file only, never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charger.site_secret import (
    MIN_SECRET_BYTES,
    SecretFileError,
    SiteSecret,
    generate_secret,
    process_secret,
    read_secret_file,
    resolve_secret,
)

KEY = b"k3y-" + b"x" * 40


def _file(tmp_path: Path, content: bytes = KEY + b"\n", mode: int = 0o600) -> Path:
    path = tmp_path / "site.key"
    path.write_bytes(content)
    path.chmod(mode)
    return path


def test_a_private_file_is_read_without_surrounding_whitespace(tmp_path: Path) -> None:
    secret = read_secret_file(_file(tmp_path))
    assert secret.key == KEY and secret.origin == str(tmp_path / "site.key")


@settings(max_examples=40, deadline=None)
@given(st.integers(0o600, 0o777).filter(lambda m: m & 0o077))
def test_a_file_group_or_others_can_touch_is_refused(tmp_path_factory: pytest.TempPathFactory, mode: int) -> None:
    path = _file(tmp_path_factory.mktemp("key"), mode=mode)
    with pytest.raises(SecretFileError, match="chmod 600") as refused:
        read_secret_file(path)
    assert KEY.decode() not in str(refused.value)


def test_a_symlink_a_directory_a_missing_or_short_file_is_refused(tmp_path: Path) -> None:
    target = _file(tmp_path)
    (tmp_path / "link").symlink_to(target)
    for path in (tmp_path / "link", tmp_path, tmp_path / "missing"):
        with pytest.raises(SecretFileError):
            read_secret_file(path)
    with pytest.raises(SecretFileError, match=f"at least {MIN_SECRET_BYTES}"):
        read_secret_file(_file(tmp_path, content=b"short"))


def test_the_key_shows_in_no_repr_str_or_error() -> None:
    secret = generate_secret()
    for text in (repr(secret), str(secret), f"{secret}", repr([secret])):
        assert secret.key.hex() not in text and repr(secret.key) not in text and "generated" in text
    with pytest.raises(ValueError, match="at least") as short:
        SiteSecret(b"tiny-key")
    assert "tiny-key" not in str(short.value)


def test_resolution(tmp_path: Path) -> None:
    assert resolve_secret(None) is process_secret() is resolve_secret(None)
    given = generate_secret()
    assert resolve_secret(given) is given
    assert resolve_secret(KEY).key == KEY
    assert resolve_secret(_file(tmp_path)).key == KEY
    assert resolve_secret(str(tmp_path / "site.key")).key == KEY


def test_a_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    path = _file(tmp_path)
    os.chown(path, 12345, 12345)
    with pytest.raises(SecretFileError, match="owned by uid 12345"):
        read_secret_file(path)
