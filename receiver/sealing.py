"""Key secrets at rest: sealed with the application key (SECRET_KEY), opened where a request
is checked. A dump of the database, a backup or an analyst's query shows ciphertext only.

SECRET_KEY holds one or more Fernet keys, comma-separated: the first seals, every one opens,
so a new key goes first, `receiver rotate-secret-key` reseals every secret with it, and the
old one is dropped afterwards. A stored value without the `fernet:` mark is a secret stored
in clear by an earlier release, read as it is until it is resealed.

Without SECRET_KEY, a SQLite store keeps a key of its own in a file beside the database,
created once with mode 0600, so that a first run works and its secrets are still sealed;
Postgres serves many hosts, which must share one key, so it stores no secret until
SECRET_KEY is set (reading the ones it has still works).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from receiver.config import Settings
from receiver.errors import ReceiverError

log = logging.getLogger(__name__)
SEALED = "fernet:"


class NoSecretKey(ReceiverError):
    status = 503
    message = (
        "This receiver stores no key secret until its operator sets SECRET_KEY "
        "(see the README's Security section)."
    )


class Keyring:
    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, secret: str) -> str:
        return SEALED + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED).encode()).decode()
        except InvalidToken:
            # Sealed with a key SECRET_KEY no longer holds: the key's requests fail (500, which
            # Segment retries) until SECRET_KEY holds that key again.
            log.error("a key secret cannot be opened with any key of SECRET_KEY")
            raise ReceiverError() from None

    def reseal(self, stored: str) -> str:
        if not stored.startswith(SEALED):
            return self.seal(stored)
        return SEALED + self._fernet.rotate(stored.removeprefix(SEALED).encode()).decode()


_keyring: Keyring | None = None


def configure(settings: Settings) -> None:
    """Set this process's keyring from the settings (create_app calls it)."""
    global _keyring
    keys = [k.strip().encode() for k in settings.secret_key.split(",") if k.strip()]
    if not keys:
        keys = _sqlite_key(settings.database_url)
    try:
        _keyring = Keyring(keys) if keys else None
    except ValueError:
        raise ValueError(
            "SECRET_KEY must be Fernet keys (32 url-safe base64-encoded bytes), comma-separated:"
            " `receiver new-secret-key` prints one"
        ) from None
    _open.cache_clear()


def has_keyring() -> bool:
    return _keyring is not None


def new_key() -> str:
    return Fernet.generate_key().decode()


def seal(secret: str | None) -> str | None:
    if secret is None:
        return None
    if _keyring is None:
        raise NoSecretKey()
    return _keyring.seal(secret)


def secret_of(stored: str | None) -> str | None:
    """The secret in clear, from what api_keys.secret holds: call it where secrets are read."""
    if stored is None or not stored.startswith(SEALED):
        return stored
    return _open(stored)


@lru_cache(maxsize=1024)
def _open(stored: str) -> str:
    # Opening costs an HMAC and an AES decryption: once per key and process, not per request.
    if _keyring is None:
        raise NoSecretKey()
    return _keyring.open(stored)


@dataclass
class Resealed:
    sealed: int = 0
    # Sealed with no key SECRET_KEY holds: left as they are.
    unopenable: int = 0


def reseal_all(connection: sa.Connection, only_clear: bool = False) -> Resealed:
    """Seal every key secret again with the first key (or only those stored in clear)."""
    if _keyring is None:
        raise NoSecretKey()
    keys = sa.table("api_keys", sa.column("account_id"), sa.column("id"), sa.column("secret"))
    rows = connection.execute(
        sa.select(keys.c.account_id, keys.c.id, keys.c.secret).where(keys.c.secret.is_not(None))
    ).all()
    done = Resealed()
    for account_id, key_id, stored in rows:
        if only_clear and stored.startswith(SEALED):
            continue
        try:
            resealed = _keyring.reseal(stored)
        except InvalidToken:
            done.unopenable += 1
            continue
        connection.execute(
            sa.update(keys)
            .where(keys.c.account_id == account_id, keys.c.id == key_id)
            .values(secret=resealed)
        )
        done.sealed += 1
    return done


def _sqlite_key(database_url: str) -> list[bytes]:
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return []
    if not url.database or url.database == ":memory:":
        return [Fernet.generate_key()]  # the store lives as long as the process: so does its key
    path = Path(url.database + ".key")
    if not path.exists():
        _create_private(path, Fernet.generate_key())
    return [path.read_bytes().strip()]


def _create_private(path: Path, content: bytes) -> None:
    """Write a file of mode 0600, whole or not at all: several workers may race to make it."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another worker's key won: use it
    finally:
        temporary.unlink()
