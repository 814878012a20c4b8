"""Bodies sent compressed. Segment's Python library posts batches with `Content-Encoding:
gzip` when its `gzip` option is on; they are decompressed here, below Flask, so that every
part of the app (the body-size check, the signature check, the parser) reads the JSON that
was sent. The decompressed size is bounded by MAX_BODY_BYTES, as a plain body is, so a small
compressed body cannot make a large one in memory. What cannot be decoded is refused by the
app (errors.py's shapes) from the problem left in the WSGI environ."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from receiver.errors import BadRequest, ReceiverError, UnsupportedMediaType

PROBLEM_KEY = "receiver.body_problem"
GZIP = frozenset({"gzip", "x-gzip"})
_CHUNK = 64 * 1024


class DecodeBodies:
    """WSGI middleware: a gzip body is handed on decompressed; any other encoding, or a body
    that is not gzip, is a problem for the app to answer."""

    def __init__(self, app: Callable[..., Iterable[bytes]], max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding not in ("", "identity"):
            try:
                body = self._decoded(environ, encoding)
            except (ReceiverError, RequestEntityTooLarge) as problem:
                environ[PROBLEM_KEY] = problem
                body = b""
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_CONTENT_ENCODING", None)
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["wsgi.input_terminated"] = False
        return self.app(environ, start_response)

    def _decoded(self, environ: dict[str, Any], encoding: str) -> bytes:
        if encoding not in GZIP:
            raise UnsupportedMediaType(
                f"Content-Encoding {encoding!r} is not supported: send the body as it is, "
                "or compressed with gzip."
            )
        limit = self.max_body_bytes
        stream = get_input_stream(environ)
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = bytearray()
        read = 0
        try:
            while chunk := stream.read(_CHUNK):
                read += len(chunk)
                out += decompressor.decompress(chunk, limit + 1 - len(out))
                if len(out) > limit or read > limit:
                    raise RequestEntityTooLarge()
        except zlib.error:
            raise BadRequest("Body is not valid gzip, though Content-Encoding says so.") from None
        if not decompressor.eof:
            raise BadRequest("Body is cut short: its gzip data is incomplete.")
        return bytes(out)


def refuse_undecodable_body(environ: dict[str, Any]) -> None:
    """The app's side: raise what DecodeBodies found wrong with the body, if anything."""
    problem = environ.get(PROBLEM_KEY)
    if problem is not None:
        raise problem
