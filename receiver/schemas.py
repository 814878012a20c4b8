"""Request and response shapes of the admin API, declared once: the JSON API (api/) answers
and validates with them, the OpenAPI document at /openapi.json is generated from them, and the
console (console/) validates its forms with the same ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema as BaseSchema
from marshmallow import ValidationError, pre_load, validates_schema
from marshmallow import fields as f
from marshmallow.validate import Length, OneOf, Range, Regexp

from receiver import exact_json
from receiver.accounts import SECRET_MAX_LENGTH, SECRET_MIN_LENGTH
from receiver.browser import BROWSER, KEY_KINDS, SERVER, origins_problem
from receiver.ingest.segment import SEGMENT_TYPES
from receiver.rules.operators import NO_VALUE, OPERATORS, compile_pattern
from receiver.rules.paths import is_valid_path

MAX_VALUE_JSON_BYTES = 10_000
COMPARISONS = frozenset({"gt", "gte", "lt", "lte"})
TEXT_OPERATORS = frozenset({"contains", "starts_with", "ends_with", "matches"})


def unstorable(value: Any) -> str | None:
    """Why a JSON value cannot be stored as it is (the store holds no NUL character in text;
    integers of any size are kept, see exact_json), or None."""
    if isinstance(value, str):
        return "NUL characters are not allowed." if "\x00" in value else None
    if isinstance(value, dict):
        return next(filter(None, (unstorable(k) or unstorable(v) for k, v in value.items())), None)
    if isinstance(value, list):
        return next(filter(None, map(unstorable, value)), None)
    return None


class UtcDateTime(f.DateTime):
    """Every time is UTC; SQLite hands them back without their offset, so it is put back."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)


class Schema(BaseSchema):
    @pre_load
    def _storable(self, data: Any, **_: Any) -> Any:
        # Refused here, with a message, rather than failing when stored.
        problem = unstorable(data)
        if problem:
            raise ValidationError(problem, "_schema")
        return data


def validate_path(path: str) -> None:
    if not is_valid_path(path):
        raise ValidationError("A dot path like `properties.email` or `products.0.sku`.")


class ConditionSchema(Schema):
    field = f.String(required=True, validate=validate_path)
    op = f.String(required=True, validate=OneOf(sorted(OPERATORS)))
    value = f.Raw(allow_none=True, load_default=None)

    @validates_schema
    def _value_fits_the_operator(self, data: dict[str, Any], **_: Any) -> None:
        op, value = data.get("op"), data.get("value")
        if len(exact_json.dumps(value)) > MAX_VALUE_JSON_BYTES:
            raise ValidationError("Too large.", "value")
        if op == "matches":
            try:
                compile_pattern(value)
            except ValueError as error:
                raise ValidationError(str(error), "value") from None
        elif op in TEXT_OPERATORS and not isinstance(value, str):
            raise ValidationError(f"`{op}` needs a string.", "value")
        elif op == "in" and not isinstance(value, list):
            raise ValidationError("`in` needs a list.", "value")
        elif op in COMPARISONS and (isinstance(value, bool) or not isinstance(value, int | float)):
            # The event's side may be a string holding a number (operators.as_number).
            raise ValidationError(f"`{op}` needs a number, such as 3 or 2.5.", "value")
        elif op in NO_VALUE and value is not None:
            raise ValidationError(f"`{op}` takes no value.", "value")


class SignalSchema(Schema):
    name = f.String(allow_none=True, load_default=None, validate=Length(1, 200))
    score = f.Integer(allow_none=True, load_default=None, validate=Range(-1_000_000, 1_000_000))


class BackfillSchema(Schema):
    status = f.String(
        metadata={
            "description": "none (a disabled rule has no backfill), pending, running, done "
            "or cancelled."
        }
    )
    scanned = f.Integer()
    mapped = f.Integer()
    started_at = UtcDateTime(allow_none=True)
    heartbeat_at = UtcDateTime(
        allow_none=True, metadata={"description": "When its runner last reported."}
    )
    finished_at = UtcDateTime(allow_none=True)


class RuleSchema(Schema):
    id = f.Integer(dump_only=True)
    name = f.String(required=True, validate=Length(1, 200))
    enabled = f.Boolean(load_default=True)
    priority = f.Integer(load_default=0, validate=Range(-1_000_000, 1_000_000))
    source = f.String(allow_none=True, load_default=None, validate=OneOf(["segment", "webhook"]))
    event_type = f.String(
        allow_none=True,
        load_default=None,
        validate=OneOf(
            sorted(SEGMENT_TYPES), error="One of Segment's types: {choices}; or null for any."
        ),
    )
    event_name = f.String(allow_none=True, load_default=None, validate=Length(1, 500))
    conditions = f.List(f.Nested(ConditionSchema), load_default=list, validate=Length(max=50))
    # Not `fields`: that name belongs to Schema itself.
    field_paths = f.Dict(
        data_key="fields",
        attribute="fields",
        keys=f.String(validate=Regexp(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")),
        values=f.String(validate=validate_path),
        load_default=dict,
        validate=Length(max=50),
    )
    signal = f.Nested(SignalSchema, allow_none=True, load_default=None)
    version = f.Integer(dump_only=True)
    created_at = UtcDateTime(dump_only=True)
    updated_at = UtcDateTime(dump_only=True)
    backfill = f.Method("_backfill", dump_only=True)

    def _backfill(self, rule: Any) -> dict[str, Any]:
        return BACKFILL.dump(
            {
                name: getattr(rule, f"backfill_{name}")
                for name in (
                    "status",
                    "scanned",
                    "mapped",
                    "started_at",
                    "heartbeat_at",
                    "finished_at",
                )
            }
        )


BACKFILL = BackfillSchema()


class RuleVersionSchema(RuleSchema):
    """One definition a rule has had: its fields, its version and when it was made."""

    class Meta:
        exclude = ("id", "updated_at", "backfill")


class RevertSchema(Schema):
    version = f.Integer(required=True, validate=Range(1, 2**31 - 1))


class PreviewSchema(Schema):
    rule = f.Nested(RuleSchema, required=True)
    payload = f.Dict(required=True)


class PreviewResultSchema(Schema):
    matches = f.Boolean()
    mapped_name = f.String(allow_none=True)
    score = f.Integer(allow_none=True)
    extracted = f.Dict(data_key="fields", attribute="fields")
    email = f.String(allow_none=True)
    queue = f.Dict(
        metadata={
            "description": "What the rule would map among queued signals: "
            "candidates, scanned, matches, leads_created."
        }
    )


class PageArgsSchema(Schema):
    page = f.Integer(load_default=1, validate=Range(1, 100_000))
    per_page = f.Integer(load_default=50, validate=Range(1, 500))


class QueueGroupSchema(Schema):
    source = f.String()
    event_type = f.String(allow_none=True)
    event_name = f.String(allow_none=True)
    count = f.Integer()
    first_seen = UtcDateTime()
    last_seen = UtcDateTime()
    sample = f.Dict()
    suggested_rule = f.Dict()


class QueueSchema(Schema):
    total = f.Integer()
    page = f.Integer()
    per_page = f.Integer()
    groups = f.List(f.Nested(QueueGroupSchema))


class LeadArgsSchema(PageArgsSchema):
    email = f.String(validate=Length(1, 320))
    order = f.String(
        load_default="last_seen",
        validate=OneOf(["last_seen", "score"]),
        metadata={
            "description": "last_seen: most recently seen first; score: by score_recent, "
            "highest first (who is hot now)."
        },
    )


class LeadDetailArgsSchema(Schema):
    signals_limit = f.Integer(load_default=100, validate=Range(1, 1_000))


class UsageSchema(Schema):
    plan = f.String()
    limit = f.Integer()
    used = f.Integer()
    period_start = UtcDateTime()
    period_end = UtcDateTime()


class KeySchema(Schema):
    id = f.Integer()
    prefix = f.String()
    kind = f.String(metadata={"description": "`server`, or `browser` (CONTRACT section 5)."})
    allowed_origins = f.List(f.String(), allow_none=True)
    has_secret = f.Boolean()
    whole_body_signatures = f.Boolean()
    created_at = UtcDateTime()
    revoked_at = UtcDateTime(allow_none=True)


class NewKeyArgsSchema(Schema):
    kind = f.String(load_default=SERVER, validate=OneOf(KEY_KINDS))
    secret = f.String(
        allow_none=True,
        load_default=None,
        validate=Length(SECRET_MIN_LENGTH, SECRET_MAX_LENGTH),
    )
    allowed_origins = f.List(
        f.String(),
        load_default=None,
        metadata={"description": "A browser key's origins: scheme://host[:port], or `*`."},
    )
    whole_body_signatures = f.Boolean(
        load_default=False,
        metadata={
            "description": "Take X-Signature over the whole body only, never over a batch's "
            "first element (for senders that do not batch)."
        },
    )

    @validates_schema
    def _browser_key(self, data: dict[str, Any], **_: Any) -> None:
        origins = data.get("allowed_origins")
        if data.get("kind") != BROWSER:
            if origins is not None:
                raise ValidationError("Only a browser key has origins.", "allowed_origins")
            return
        if data.get("secret") is not None:
            raise ValidationError("A browser key is public: it has no secret.", "secret")
        if problem := origins_problem(origins or []):
            raise ValidationError(problem, "allowed_origins")


class NewKeySchema(KeySchema):
    api_key = f.String(metadata={"description": "Shown once: only its hash is stored."})
    webhook_path = f.String()


class AdminTokenSchema(Schema):
    id = f.Integer()
    prefix = f.String()
    current = f.Boolean(metadata={"description": "The token this request was made with."})
    created_at = UtcDateTime()
    revoked_at = UtcDateTime(allow_none=True)


class NewAdminTokenSchema(AdminTokenSchema):
    admin_token = f.String(metadata={"description": "Shown once: only its hash is stored."})


class IdentitySchema(Schema):
    kind = f.String()
    value = f.String()
    blocked_at = UtcDateTime(allow_none=True)


class UnlinkedSchema(Schema):
    kind = f.String()
    value = f.String()
    unlinked_at = UtcDateTime()
    signals_moved = f.Integer()


class LeadSignalSchema(Schema):
    id = f.Integer()
    source = f.String()
    event_type = f.String(allow_none=True)
    event_name = f.String(allow_none=True)
    mapped_name = f.String(allow_none=True)
    score = f.Integer(allow_none=True)
    rule_id = f.Integer(allow_none=True)
    mapped_fields = f.Dict(allow_none=True)
    anonymous_id = f.String(allow_none=True)
    user_id = f.String(allow_none=True)
    message_id = f.String(allow_none=True)
    occurred_at = UtcDateTime()
    received_at = UtcDateTime()
    linked_by_signal_id = f.Integer(allow_none=True)
    linked_at = UtcDateTime(allow_none=True)
    payload = f.Dict()


class LeadSchema(Schema):
    id = f.Integer()
    email = f.String()
    name = f.String(allow_none=True)
    first_name = f.String(allow_none=True)
    last_name = f.String(allow_none=True)
    company = f.String(allow_none=True)
    title = f.String(allow_none=True)
    group_id = f.String(allow_none=True)
    traits = f.Dict()
    first_seen_at = UtcDateTime()
    last_seen_at = UtcDateTime()
    created_at = UtcDateTime()
    signal_count = f.Integer()
    score = f.Integer()
    score_recent = f.Float(
        metadata={
            "description": "Each signal's score times 1 - age / SCORE_WINDOW_DAYS (age by "
            "event time, now), none past the window."
        }
    )
    identities = f.List(f.Nested(IdentitySchema))
    merged_emails = f.List(
        f.String(), metadata={"description": "Emails of leads merged into this one: they name it."}
    )
    unlinked = f.List(
        f.Nested(UnlinkedSchema),
        metadata={"description": "Identifiers unlinked from this lead: they never join it again."},
    )
    signals = f.List(f.Nested(LeadSignalSchema))


class LeadListSchema(Schema):
    total = f.Integer()
    page = f.Integer()
    per_page = f.Integer()
    leads = f.List(
        f.Nested(LeadSchema(exclude=("identities", "merged_emails", "unlinked", "signals")))
    )


class UnlinkSchema(Schema):
    kind = f.String(required=True, validate=OneOf(["anonymous_id", "user_id"]))
    value = f.String(required=True, validate=Length(1, 1000))


class UnlinkedAnswerSchema(Schema):
    lead_id = f.Integer()
    kind = f.String()
    value = f.String()
    signals_moved = f.Integer()


class MergeSchema(Schema):
    from_ = f.Integer(required=True, data_key="from", validate=Range(1, 2**63 - 1))
    into = f.Integer(required=True, validate=Range(1, 2**63 - 1))


class ColdStorageSchema(Schema):
    cold_signals = f.Integer()
    retention_days = f.Integer()
    oldest_received_at = UtcDateTime(allow_none=True)
    next_expiry_at = UtcDateTime(allow_none=True)


class ConflictSchema(Schema):
    message_id = f.String()
    versions = f.Integer()
    first_received_at = UtcDateTime()
    last_received_at = UtcDateTime()


def schema_name(schema: Any) -> str:
    """Component names for the OpenAPI document: one per schema and modifier."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__.removesuffix("Schema")
    if isinstance(schema, Schema):
        name += "Patch" if schema.partial else ""
        # Fields left out where the schema is used, not by its class (RuleVersion's Meta).
        name += "Summary" if schema.exclude - set(schema.opts.exclude) else ""
    return name
