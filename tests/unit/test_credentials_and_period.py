from datetime import UTC, date, datetime
from urllib.parse import unquote

import pytest

from receiver.credentials import API_KEY_KIND, new_credential, parse_credential, redact
from receiver.store import period_of


def test_a_new_key_parses_back_to_its_account():
    key = new_credential(API_KEY_KIND, 42)
    parsed = parse_credential(key.text, API_KEY_KIND)
    assert parsed is not None and parsed.account_id == 42 and parsed.digest == key.digest


def test_malformed_keys_do_not_parse():
    for text in [
        "",
        "../../etc/passwd",
        "rk_1_' OR 1=1 --",
        "rk_0_" + "a" * 30,
        "ra_1_" + "a" * 30,
    ]:
        assert parse_credential(text, API_KEY_KIND) is None


def test_redact_leaves_only_the_prefix():
    key = new_credential(API_KEY_KIND, 7).text
    line = redact(f'"POST /webhook/{key}/v1/batch HTTP/1.1" 200')
    assert key not in line and key[:9] in line


@pytest.mark.parametrize(
    "spell",
    [
        lambda key: key.replace("_", "%5F", 1),  # the app decodes the path: still the key
        lambda key: "%72" + key[1:],
        lambda key: key[:12] + "".join(f"%{ord(c):02X}" for c in key[12:]),
    ],
)
def test_redact_cuts_a_percent_encoded_key_too(spell):
    key = new_credential(API_KEY_KIND, 7).text
    line = redact(f'"POST /webhook/{spell(key)}?q=a%20b HTTP/1.1" 200')
    assert key[-16:] not in unquote(line)  # nothing of the key past its prefix
    assert key[:9] in line


def test_period_is_the_utc_calendar_month():
    assert period_of(datetime(2026, 1, 31, 23, 59, tzinfo=UTC)) == (
        date(2026, 1, 1),
        datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert period_of(datetime(2026, 12, 5, tzinfo=UTC)) == (
        date(2026, 12, 1),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


def test_prefix_keeps_four_random_characters_even_when_they_hold_underscores():
    from receiver.credentials import Credential

    key = Credential(API_KEY_KIND, 12, "rk_12_ab_c" + "_x" * 20)
    assert key.prefix == "rk_12_ab_c"
