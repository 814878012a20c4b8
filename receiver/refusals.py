"""Why a request's credential was refused, in words its sender can act on: a missing
credential, or the wrong kind of credential (a missing or wrong secret: ingest/signature.py).
What can be told from the credential's shape is told before the store is asked; an unknown
or revoked one is the store's answer (errors.Unauthorized's own message)."""

from __future__ import annotations

from receiver.credentials import ADMIN_TOKEN_KIND, API_KEY_KIND, Credential, parse_credential
from receiver.errors import Unauthorized

NO_API_KEY = (
    "No API key: put it in the path (/webhook/<api_key>) or send "
    "Authorization: Basic base64(<api_key>:)."
)
ADMIN_TOKEN_AS_API_KEY = (
    "This is an admin token (ra_...): events are sent with an API key (rk_...), "
    "the one create-account printed or POST /admin/keys made."
)
NOT_AN_API_KEY = "Not an API key: an API key reads rk_<account>_<random>."
NO_ADMIN_TOKEN = "No admin token: send Authorization: Bearer <admin token>."
API_KEY_AS_ADMIN_TOKEN = (
    "This is an API key (rk_...): the admin API takes the admin token (ra_...) that "
    "create-account printed, as Authorization: Bearer <admin token>."
)
NOT_AN_ADMIN_TOKEN = "Not an admin token: an admin token reads ra_<account>_<random>."


def refuse_unusable_api_key(api_key: str | None) -> None:
    """Raise Unauthorized when api_key cannot be an API key at all."""
    if not api_key:
        raise Unauthorized(NO_API_KEY)
    if parse_credential(api_key, API_KEY_KIND) is None:
        is_token = parse_credential(api_key, ADMIN_TOKEN_KIND) is not None
        raise Unauthorized(ADMIN_TOKEN_AS_API_KEY if is_token else NOT_AN_API_KEY)


def admin_token_of(authorization: str) -> Credential:
    """The admin token an Authorization header carries; Unauthorized when it carries none."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if parse_credential(token, API_KEY_KIND) is not None:
        raise Unauthorized(API_KEY_AS_ADMIN_TOKEN)
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(NO_ADMIN_TOKEN)
    credential = parse_credential(token, ADMIN_TOKEN_KIND)
    if credential is None:
        raise Unauthorized(NOT_AN_ADMIN_TOKEN)
    return credential
