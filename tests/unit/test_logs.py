"""Log lines: redacted, one line each, with the request's id."""

from __future__ import annotations

import io
import json
import logging

import pytest
from flask import Flask

from receiver import logs, request_id

KEY = "rk_12_abcdefghijklmnopqrstuvwxyz0123"


def emit(handler_filter, formatter, message, *args):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(handler_filter)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning(message, *args)
    return stream.getvalue()


def test_a_newline_made_by_decoding_a_key_is_escaped_not_written():
    # The redaction decodes the line to find the key spelled with escapes: %0A becomes "\n".
    path = "/webhook/rk%5F12_" + KEY[6:] + "%0A2026-12-01 INFO forged line"
    line = emit(logs.RedactCredentials(), logging.Formatter("%(message)s"), "POST %s", path)
    assert line.count("\n") == 1 and "\\n2026-12-01 INFO forged line" in line
    assert KEY not in line and "rk_12_abcd…" in line


def test_control_characters_are_escaped_in_plain_lines():
    assert logs.escape_controls("a\rb\x1b[31mc\x00d\u2028e") == "a\\rb\\x1b[31mc\\x00d\\u2028e"
    assert logs.escape_controls("plain text, é") == "plain text, é"


def test_a_json_line_is_one_object_with_time_level_message_and_no_key():
    line = emit(logs.RedactCredentials(escape=False), logs.json_formatter(), "key %s\nnext", KEY)
    assert line.count("\n") == 1
    record = json.loads(line)
    assert {"time", "level", "message", "request_id"} <= set(record)
    assert record["level"] == "WARNING" and record["message"] == "key rk_12_abcd…\nnext"


def test_a_line_written_in_a_request_carries_its_id():
    app = Flask(__name__)
    request_id.init_app(app)
    with app.test_request_context(headers={"X-Request-Id": "req-42"}):
        app.preprocess_request()
        line = emit(logs.RedactCredentials(), logging.Formatter(logs.FORMAT), "hello")
    assert "[req-42] hello" in line
    outside = emit(logs.RedactCredentials(), logging.Formatter(logs.FORMAT), "hello")
    assert "[-] hello" in outside


def test_an_unknown_log_format_is_refused_not_taken_for_plain():
    assert logs.checked_format("JSON") == "json"
    with pytest.raises(ValueError, match="plain or json"):
        logs.checked_format("jsonl")


def test_a_terminal_keeps_its_colour_codes_and_nothing_else_unescaped():
    coloured = "\x1b[33mPress CTRL+C to quit\x1b[0m\nforged"
    assert logs.escape_controls(coloured, keep_colour=True) == (
        "\x1b[33mPress CTRL+C to quit\x1b[0m\\nforged"
    )
    assert logs.escape_controls("\x1b[2J", keep_colour=True) == "\\x1b[2J"
