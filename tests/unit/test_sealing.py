"""Sealing key secrets: pure, no store."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from receiver import sealing
from receiver.config import Settings
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture
def keys():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    yield old, new
    sealing.configure(Settings(secret_key=TEST_SECRET_KEY))


def test_a_sealed_secret_opens_with_any_key_and_reseals_with_the_first(keys):
    old, new = keys
    sealing.configure(Settings(secret_key=old))
    sealed = sealing.seal("S3cret-unit")
    assert sealed.startswith("fernet:") and "S3cret-unit" not in sealed
    sealing.configure(Settings(secret_key=f"{new},{old}"))
    assert sealing.secret_of(sealed) == "S3cret-unit"
    resealed = sealing.Keyring([new.encode()]).open(
        sealing.Keyring([new.encode(), old.encode()]).reseal(sealed)
    )
    assert resealed == "S3cret-unit"


def test_a_secret_stored_in_clear_reads_as_it_is_and_none_stays_none(keys):
    sealing.configure(Settings(secret_key=keys[0]))
    assert sealing.secret_of("legacy-clear") == "legacy-clear"
    assert sealing.secret_of(None) is None and sealing.seal(None) is None


def test_a_secret_key_that_is_no_fernet_key_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="new-secret-key"):
        sealing.configure(Settings(secret_key="correct horse battery staple"))


def test_postgres_without_secret_key_seals_nothing(keys):
    sealing.configure(Settings(database_url="postgresql+psycopg://db/receiver"))
    with pytest.raises(sealing.NoSecretKey):
        sealing.seal("S3cret-none")
