"""Shared-secret checks over the bytes exactly as received."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from werkzeug.datastructures import Headers

from receiver.ingest.parse import first_element_span

SIGNATURE_HEADERS = ("X-Signature", "X-Segment-Signature")
NO_SECRET = (
    "This API key needs its secret: send X-Api-Secret, or an X-Signature HMAC-SHA1 of the "
    "body keyed with the secret."
)
WRONG_SECRET = (
    "Wrong secret for this API key: the X-Api-Secret or X-Signature sent does not match "
    "the key's secret."
)
# How a request showed its key's secret.
SECRET, WHOLE_BODY, FIRST_ELEMENT = "secret", "whole body", "first element"


def hmac_sha1_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha1).hexdigest()


def signed_texts(raw_body: bytes) -> list[bytes]:
    """What a signature may cover: the whole body or, for a JSON array, the raw text of its
    first element (Segment's Webhooks (Actions) destination signs only that when it
    batches). Found once per request, whatever the number of signature headers."""
    candidates = [raw_body]
    first = first_element_span(raw_body)
    if first is not None:
        candidates.append(raw_body[first[0] : first[1]])
    return candidates


def signature_matches(secret: str, raw_body: bytes, signature: str) -> bool:
    return _signs_one_of(secret, signed_texts(raw_body), signature)


def how_presented(secret: str, headers: Headers | Mapping[str, str], raw_body: bytes) -> str | None:
    """SECRET, WHOLE_BODY or FIRST_ELEMENT: the strongest way the request showed the secret,
    or None. A first-element signature covers one event of a batch, not what follows it."""
    given = headers.get("X-Api-Secret")
    if given is not None and hmac.compare_digest(given.encode(), secret.encode()):
        return SECRET
    signatures = [s for s in (headers.get(name) for name in SIGNATURE_HEADERS) if s is not None]
    if not signatures:
        return None
    whole, *first = signed_texts(raw_body)
    if any(_signs_one_of(secret, [whole], signature) for signature in signatures):
        return WHOLE_BODY
    if first and any(_signs_one_of(secret, first, signature) for signature in signatures):
        return FIRST_ELEMENT
    return None


def _signs_one_of(secret: str, candidates: list[bytes], signature: str) -> bool:
    given = signature.strip().lower().encode()
    matches = [hmac.compare_digest(hmac_sha1_hex(secret, c).encode(), given) for c in candidates]
    return any(matches)


def secret_presented(secret: str, headers: Headers | Mapping[str, str], raw_body: bytes) -> bool:
    """Any one of the ways to show the secret is enough, whatever else came with it."""
    return how_presented(secret, headers, raw_body) is not None


def secret_refusal(headers: Headers | Mapping[str, str]) -> str:
    """The message for a request that did not show its key's secret."""
    sent = ("X-Api-Secret", *SIGNATURE_HEADERS)
    return WRONG_SECRET if any(headers.get(name) is not None for name in sent) else NO_SECRET
