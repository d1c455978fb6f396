import base64
import os

import pytest
from cryptography.exceptions import InvalidTag

from payhub.kernel.crypto import KeyRing, hash_secret


def _ring(*kids: str) -> KeyRing:
    return KeyRing.parse(",".join(f"{k}:{base64.b64encode(os.urandom(32)).decode()}" for k in kids))


def test_round_trip_and_ciphertext_names_its_key() -> None:
    ring = _ring("k1")
    token = ring.encrypt_text("appsecret", "m1:alipay")
    assert token.startswith("k1:") and "appsecret" not in token
    assert ring.decrypt_text(token, "m1:alipay") == "appsecret"


def test_associated_data_binds_ciphertext_to_its_owner() -> None:
    ring = _ring("k1")
    token = ring.encrypt_text("appsecret", "m1:alipay")
    with pytest.raises(InvalidTag):
        ring.decrypt_text(token, "m2:alipay")


def test_rotation_keeps_old_ciphertexts_readable() -> None:
    old_spec = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    old = KeyRing.parse(old_spec)
    token = old.encrypt_text("secret")
    rotated = KeyRing.parse(f"k2:{base64.b64encode(os.urandom(32)).decode()},{old_spec}")
    assert rotated.decrypt_text(token) == "secret"
    assert rotated.encrypt_text("x").startswith("k2:")


def test_development_ring_is_created_once_with_private_permissions(tmp_path: os.PathLike[str]) -> None:
    first = KeyRing.development(str(tmp_path))
    token = first.encrypt_text("x")
    assert KeyRing.development(str(tmp_path)).decrypt_text(token) == "x"
    assert oct(os.stat(os.path.join(tmp_path, "keys")).st_mode & 0o777) == "0o600"


def test_secret_hash_is_one_way_and_stable() -> None:
    assert hash_secret("phk_abc") == hash_secret("phk_abc")
    assert "phk_abc" not in hash_secret("phk_abc")


def test_derived_keys_are_stable_per_key_ring_and_label() -> None:
    # Card fingerprints are looked up later by the key derived here: it must not change between
    # processes, and different purposes must not share a key.
    spec = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    ring, same = KeyRing.parse(spec), KeyRing.parse(spec)
    assert ring.derive_key(b"a") == same.derive_key(b"a")
    assert len(ring.derive_key(b"a")) == 32
    assert ring.derive_key(b"a") != ring.derive_key(b"b")
    assert ring.derive_key(b"a") != KeyRing.parse(f"k1:{base64.b64encode(os.urandom(32)).decode()}").derive_key(b"a")
