"""API keys and admin tokens: generated once, shown once, stored only as SHA-256 hashes.

A credential reads `<kind>_<account_id>_<random>`, so its account is known without a global
lookup table (every key of the store leads with account_id) and a malformed one is refused
without touching the store.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from urllib.parse import unquote

API_KEY_KIND = "rk"
ADMIN_TOKEN_KIND = "ra"
_SHAPE = re.compile(r"^(rk|ra)_([1-9][0-9]{0,17})_([A-Za-z0-9_-]{20,64})$")
PREFIX_RANDOM_CHARS = 4


@dataclass(frozen=True)
class Credential:
    kind: str
    account_id: int
    text: str

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.text.encode()).digest()

    @property
    def prefix(self) -> str:
        """Enough to recognise a credential in a list or a log, never enough to use it."""
        kind, account, random = self.text.split("_", 2)
        return f"{kind}_{account}_{random[:PREFIX_RANDOM_CHARS]}"


def new_credential(kind: str, account_id: int) -> Credential:
    return Credential(kind, account_id, f"{kind}_{account_id}_{secrets.token_urlsafe(24)}")


def parse_credential(text: str, kind: str) -> Credential | None:
    match = _SHAPE.match(text)
    if match is None or match.group(1) != kind:
        return None
    return Credential(kind, int(match.group(2)), text)


_ANY_CREDENTIAL = re.compile(r"\b(r[ka]_[0-9]{1,18}_[A-Za-z0-9_-]{0,4})[A-Za-z0-9_-]*")


def redact(text: str) -> str:
    """Cut every credential in text down to its prefix, percent-encoded ones too: a path may
    spell a key so (`rk%5F1_...`), and the app decodes it before it reads the key. A line that
    holds such a key is written decoded."""
    if "%" in text and _ANY_CREDENTIAL.search(decoded := unquote(text)):
        text = decoded
    return _ANY_CREDENTIAL.sub(r"\1…", text)
