"""Browser keys' origins and rate limit, and context.ip, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from receiver.browser import ClientRateLimit, KeyAccess, normal_origin, origins_problem
from receiver.ingest.pipeline import prepare, with_client_ip
from tests.builders import track


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("https://www.acme.example", "https://www.acme.example"),
        ("HTTPS://WWW.Acme.Example:443", "https://www.acme.example"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://acme.example:80", "http://acme.example"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("https://acme.example/", None),
        ("https://acme.example/pricing", None),
        ("https://acme.example?x=1", None),
        ("https://user@acme.example", None),
        ("https://acme.example:", None),
        ("https://acme.example:99999", None),
        ("acme.example", None),
        ("ftp://acme.example", None),
        (" https://acme.example", None),
        ("null", None),
        ("*", None),
    ],
)
def test_an_origin_is_exactly_scheme_host_and_port(text, origin):
    assert normal_origin(text) == origin


def test_origins_problem_names_the_bad_one():
    assert origins_problem(["*"]) is None
    assert origins_problem(["https://a.example", "http://localhost:1"]) is None
    assert "https://a.example/x" in (origins_problem(["https://a.example/x"]) or "")
    assert origins_problem([]) is not None


def test_a_key_allows_its_origins_or_any_with_a_star():
    access = KeyAccess(1, 2, "browser", ("https://www.acme.example",))
    assert access.allows("https://www.acme.example")
    assert access.allows("https://WWW.acme.example:443")
    assert not access.allows("https://acme.example")
    assert not access.allows("null")
    assert KeyAccess(1, 2, "browser", ("*",)).allows("https://anything.example")


def test_the_rate_limit_counts_per_key_and_client():
    limit = ClientRateLimit("2/minute")
    assert [limit.hit("1:1", "a"), limit.hit("1:1", "a")] == [None, None]
    wait = limit.hit("1:1", "a")
    assert wait is not None and 0 < wait <= 60
    assert limit.hit("1:1", "b") is None
    assert limit.hit("1:2", "a") is None


def test_a_bad_rate_limit_setting_names_the_setting():
    with pytest.raises(ValueError, match="BROWSER_RATE_LIMIT"):
        ClientRateLimit("lots")


def test_context_ip_is_added_where_absent_and_the_hash_is_kept():
    now = datetime.now(UTC)
    events = [track(), track(context={"ip": "192.0.2.1"}), track(context=None), [1]]
    before = prepare(events, now, 32 * 1024)
    after = with_client_ip(before, "203.0.113.7")
    drafts = after.drafts
    assert [d.content_hash for d in drafts] == [d.content_hash for d in before.drafts]
    assert drafts[0].payload["context"]["ip"] == "203.0.113.7"
    assert drafts[0].payload["context"]["page"] == events[0]["context"]["page"]
    assert drafts[1].payload["context"] == {"ip": "192.0.2.1"}
    assert drafts[2].payload["context"] == {"ip": "203.0.113.7"}
    assert len(after.items) == 4 and "ip" not in before.drafts[0].payload["context"]
