import pytest

from receiver.rules.engine import compile_rule, first_match, matched_email, rules_at
from receiver.rules.operators import compile_pattern
from receiver.rules.paths import MISSING, is_valid_path, resolve

EVENT = {
    "type": "track",
    "event": "Order Completed",
    "properties": {
        "total": 120.5,
        "coupon": "SPRING",
        "tags": ["b2b", "trial"],
        "products": [{"sku": "A-1"}, {"sku": "B-2"}],
        "email": "x@y.io",
        "paid": True,
        "count": 3,
    },
    "context": {"page": {"url": "https://example.com/pricing?plan=pro"}},
}


def holds(op, field, value=None):
    rule = compile_rule({"conditions": [{"field": field, "op": op, "value": value}]})
    return rule.matches("segment", "track", "Order Completed", EVENT)


def test_dot_paths_reach_into_objects_and_list_indexes():
    assert resolve(EVENT, "properties.products.1.sku") == "B-2"
    assert resolve(EVENT, "context.page.url").startswith("https://")
    for missing in [
        "properties.products.7.sku",
        "properties.nope",
        "event.length",
        "properties.products.x",
    ]:
        assert resolve(EVENT, missing) is MISSING


@pytest.mark.parametrize(
    ("op", "field", "value", "expected"),
    [
        ("equals", "properties.coupon", "SPRING", True),
        ("equals", "properties.total", 120.5, True),
        ("equals", "properties.paid", 1, False),
        ("equals", "properties.count", "3", False),
        ("not_equals", "properties.coupon", "WINTER", True),
        ("not_equals", "properties.coupon", "SPRING", False),
        ("contains", "context.page.url", "/pricing", True),
        ("contains", "properties.tags", "b2b", True),
        ("contains", "properties.tags", "enterprise", False),
        ("starts_with", "context.page.url", "https://example.com", True),
        ("starts_with", "properties.total", "1", False),
        ("ends_with", "properties.email", "@y.io", True),
        ("matches", "context.page.url", r"plan=(pro|team)$", True),
        ("matches", "properties.coupon", r"^\d+$", False),
        ("exists", "properties.coupon", None, True),
        ("exists", "properties.missing", None, False),
        ("not_exists", "properties.missing", None, True),
        ("not_exists", "properties.coupon", None, False),
        ("in", "properties.coupon", ["SPRING", "SUMMER"], True),
        ("in", "properties.count", ["3"], False),
        ("gt", "properties.total", 100, True),
        ("gt", "properties.total", 120.5, False),
        ("gte", "properties.total", 120.5, True),
        ("lt", "properties.count", 4, True),
        ("lte", "properties.count", 2, False),
        ("gt", "properties.coupon", 1, False),
    ],
)
def test_each_operator(op, field, value, expected):
    assert holds(op, field, value) is expected


@pytest.mark.parametrize("op", ["equals", "not_equals", "contains", "matches", "in", "gt"])
def test_a_path_that_does_not_resolve_does_not_match(op):
    value = "x" if op != "in" else ["x"]
    assert holds(op, "properties.absent.deeper", value) is False


def test_highest_priority_matching_rule_maps_and_extracts_fields():
    low = compile_rule(
        {
            "name": "any order",
            "priority": 1,
            "event_name": "Order Completed",
            "signal": {"score": 1},
        },
        rule_id=1,
    )
    high = compile_rule(
        {
            "name": "big order",
            "priority": 10,
            "conditions": [{"field": "properties.total", "op": "gte", "value": 100}],
            "fields": {
                "email": "properties.email",
                "sku": "properties.products.0.sku",
                "absent": "properties.nope",
            },
            "signal": {"name": "Big Order", "score": 50},
        },
        rule_id=2,
    )
    match = first_match([high, low], "segment", "track", "Order Completed", EVENT)
    assert (match.rule_id, match.name, match.score) == (2, "Big Order", 50)
    assert match.fields == {"email": "x@y.io", "sku": "A-1"}
    assert matched_email(match) == "x@y.io"


def test_source_type_and_name_must_all_match():
    rule = compile_rule({"source": "webhook", "event_name": "Order Completed"})
    assert not rule.matches("segment", "track", "Order Completed", EVENT)


def test_patterns_are_linear_time_and_invalid_ones_are_refused():
    evil = compile_pattern(r"(a+)+$")
    assert evil.search("a" * 50_000 + "!") is None  # instant with RE2
    for bad in ["((", "(?<=x)y", "x" * 2_000, 5]:
        with pytest.raises(ValueError):
            compile_pattern(bad)


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", "a b", "x." * 40 + "y"])
def test_invalid_paths_are_refused(path):
    assert not is_valid_path(path)


def test_compiled_rules_are_cached_per_store_as_well_as_per_account_and_version():
    """Account ids and rules versions repeat from one database to another."""

    def rows(name):
        return lambda: [{"id": 1, "name": name, "signal": {"name": name}}]

    postgres = rules_at("postgresql+psycopg://postgres@h/a", 1, 7, rows("on postgres"))
    sqlite = rules_at("sqlite:///a.db", 1, 7, rows("on sqlite"))
    again = rules_at("sqlite:///a.db", 1, 7, rows("not fetched: cached"))
    assert [rule.name for rule in postgres + sqlite + again] == [
        "on postgres",
        "on sqlite",
        "on sqlite",
    ]
