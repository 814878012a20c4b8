"""Correcting leads (CONTRACT section 6): unlink, merge and delete, on both stores."""

from __future__ import annotations

import sqlalchemy as sa

from tests.builders import identify, track
from tests.conftest import make_account
from tests.functional.test_admin_api import auth, send
from tests.functional.test_webhook import BOTH_STORES


def lead_of(client, account, email):
    response = client.get(f"/admin/leads?email={email}", headers=auth(account))
    return response.json if response.status_code == 200 else None


def identifiers(lead):
    return {(i["kind"], i["value"]) for i in lead["identities"]}


def unlink(client, account, lead_id, kind, value):
    return client.post(
        f"/admin/leads/{lead_id}/unlink",
        json={"kind": kind, "value": value},
        headers=auth(account),
    )


def placement(engine, account, anonymous_id):
    """(lead_id, is_cold) of each of the account's signals with that anonymousId, by id."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT lead_id, is_cold, linked_by_signal_id FROM signals"
                " WHERE account_id = :a AND anonymous_id = :anon ORDER BY id"
            ),
            {"a": account.account_id, "anon": anonymous_id},
        )
        return [tuple(row) for row in rows]


@BOTH_STORES
def test_unlink_sends_the_signals_only_it_tied_back_to_cold_storage(client, account, engine):
    send(client, account, track(anonymousId="a-shared"), track(anonymousId="a-shared"))
    send(client, account, identify("rep@example.com", anonymousId="a-shared"))
    lead = lead_of(client, account, "rep@example.com")
    assert lead["signal_count"] == 3

    answer = unlink(client, account, lead["id"], "anonymous_id", "a-shared")

    assert answer.status_code == 200, answer.json
    assert answer.json == {
        "lead_id": lead["id"],
        "kind": "anonymous_id",
        "value": "a-shared",
        "signals_moved": 2,
    }
    # The two tracks wait cold under the identifier, unlinked; the identify names the email.
    assert placement(engine, account, "a-shared")[:2] == [(None, True, None), (None, True, None)]
    after = lead_of(client, account, "rep@example.com")
    assert after["signal_count"] == 1
    assert ("anonymous_id", "a-shared") not in identifiers(after)
    assert [(u["kind"], u["value"], u["signals_moved"]) for u in after["unlinked"]] == [
        ("anonymous_id", "a-shared", 2)
    ]


@BOTH_STORES
def test_an_unlinked_identifier_never_joins_that_lead_again(client, account, engine):
    send(client, account, identify("rep@example.com", anonymousId="a-demo", userId="u-rep"))
    lead = lead_of(client, account, "rep@example.com")
    assert unlink(client, account, lead["id"], "anonymous_id", "a-demo").status_code == 200

    send(client, account, track(anonymousId="a-demo"))
    # With the lead's email and userId, the event goes to the lead; the identifier stays off.
    send(client, account, identify("rep@example.com", anonymousId="a-demo", userId="u-rep"))
    send(client, account, track(anonymousId="a-demo"))

    after = lead_of(client, account, "rep@example.com")
    assert ("anonymous_id", "a-demo") not in identifiers(after)
    assert ("user_id", "u-rep") in identifiers(after)
    places = placement(engine, account, "a-demo")
    assert [lead_id for lead_id, _, _ in places] == [lead["id"], None, lead["id"], None]
    assert [cold for _, cold, _ in places] == [False, True, False, True]

    # Another person's identify takes the identifier, with its cold signals.
    send(client, account, identify("prospect@example.com", anonymousId="a-demo"))
    prospect = lead_of(client, account, "prospect@example.com")
    assert ("anonymous_id", "a-demo") in identifiers(prospect)
    assert [lead_id for lead_id, _, _ in placement(engine, account, "a-demo")] == [
        lead["id"],
        prospect["id"],
        lead["id"],
        prospect["id"],
        prospect["id"],
    ]
    # And the rep's identify on that device again: to the rep by email, the identifier stays.
    send(client, account, identify("rep@example.com", anonymousId="a-demo"))
    assert ("anonymous_id", "a-demo") in identifiers(
        lead_of(client, account, "prospect@example.com")
    )
    assert ("anonymous_id", "a-demo") not in identifiers(
        lead_of(client, account, "rep@example.com")
    )


@BOTH_STORES
def test_unlinking_a_user_id_keeps_signals_another_linked_identifier_ties(client, account, engine):
    send(client, account, identify("ada@example.com", anonymousId="a-ada", userId="u-wrong"))
    send(client, account, track(anonymousId="a-ada", userId="u-wrong"))
    send(client, account, track(anonymousId=None, userId="u-wrong"))
    lead = lead_of(client, account, "ada@example.com")

    answer = unlink(client, account, lead["id"], "user_id", "u-wrong")

    assert answer.json["signals_moved"] == 1  # the track with u-wrong alone
    after = lead_of(client, account, "ada@example.com")
    assert identifiers(after) == {("anonymous_id", "a-ada")}
    assert after["signal_count"] == 2
    with engine.connect() as connection:
        cold = connection.execute(
            sa.text(
                "SELECT count(*) FROM signals"
                " WHERE account_id = :a AND is_cold AND user_id = 'u-wrong'"
            ),
            {"a": account.account_id},
        ).scalar()
    assert cold == 1


@BOTH_STORES
def test_unlink_answers_404_for_an_identifier_or_lead_that_is_not_the_accounts(
    client, account, engine
):
    send(client, account, identify("ada@example.com", anonymousId="a-ada"))
    lead = lead_of(client, account, "ada@example.com")
    other = make_account(engine)

    assert unlink(client, account, lead["id"], "anonymous_id", "a-nobody").status_code == 404
    assert unlink(client, other, lead["id"], "anonymous_id", "a-ada").status_code == 404
    assert unlink(client, account, lead["id"], "email", "a-ada").status_code == 422
    assert ("anonymous_id", "a-ada") in identifiers(lead_of(client, account, "ada@example.com"))


@BOTH_STORES
def test_merge_moves_everything_onto_one_lead_and_the_later_trait_wins(client, account):
    old, new = "ada@work.example", "ada@home.example"
    send(client, account, track(anonymousId="a-work"))
    send(
        client,
        account,
        identify(
            old,
            anonymousId="a-work",
            traits={"email": old, "name": "Ada L", "title": "CTO"},
            timestamp="2026-11-03T10:00:00.000Z",
        ),
    )
    send(
        client,
        account,
        identify(
            new,
            anonymousId="a-home",
            traits={"email": new, "name": "Ada Lovelace", "title": "Engineer", "plan": "pro"},
            timestamp="2026-11-02T10:00:00.000Z",
        ),
    )
    source, target = lead_of(client, account, old), lead_of(client, account, new)

    answer = client.post(
        "/admin/leads/merge",
        json={"from": source["id"], "into": target["id"]},
        headers=auth(account),
    )

    assert answer.status_code == 200, answer.json
    merged = answer.json
    assert merged["id"] == target["id"] and merged["email"] == new
    assert identifiers(merged) == {("anonymous_id", "a-work"), ("anonymous_id", "a-home")}
    assert merged["signal_count"] == 3
    assert merged["merged_emails"] == [old]
    # Trait by trait, the later event's value: the work identify came a day later.
    assert (merged["name"], merged["title"]) == ("Ada L", "CTO")
    assert merged["traits"]["plan"] == "pro"
    assert client.get(f"/admin/leads/{source['id']}", headers=auth(account)).status_code == 404
    assert lead_of(client, account, old)["id"] == target["id"]

    # Later events with the merged email go to the survivor, and link their identifiers to it.
    send(client, account, identify(old, anonymousId="a-laptop"))
    after = lead_of(client, account, new)
    assert ("anonymous_id", "a-laptop") in identifiers(after)
    assert after["signal_count"] == 4
    listed = client.get("/admin/leads", headers=auth(account)).json
    assert [lead["email"] for lead in listed["leads"]] == [new]


@BOTH_STORES
def test_merge_refuses_a_lead_into_itself_and_unknown_leads(client, account):
    send(client, account, identify("ada@example.com"))
    lead = lead_of(client, account, "ada@example.com")
    merge = lambda body: client.post("/admin/leads/merge", json=body, headers=auth(account))  # noqa: E731
    assert merge({"from": lead["id"], "into": lead["id"]}).status_code == 422
    assert merge({"from": lead["id"], "into": lead["id"] + 1000}).status_code == 404
    assert merge({"from": lead["id"]}).status_code == 422
    assert lead_of(client, account, "ada@example.com")["signal_count"] == 1


@BOTH_STORES
def test_delete_removes_the_lead_its_identifiers_and_every_signal_of_theirs(
    client, account, engine
):
    send(client, account, track(anonymousId="a-gone"), track(anonymousId="a-gone"))
    send(client, account, identify("gone@example.com", anonymousId="a-gone", userId="u-gone"))
    send(client, account, identify("kept@example.com", anonymousId="a-kept"))
    lead = lead_of(client, account, "gone@example.com")
    queued = {
        g["event_name"]: g["count"]
        for g in client.get("/admin/queue", headers=auth(account)).json["groups"]
    }

    answer = client.delete(f"/admin/leads/{lead['id']}", headers=auth(account))

    assert answer.status_code == 204
    assert client.get(f"/admin/leads/{lead['id']}", headers=auth(account)).status_code == 404
    assert placement(engine, account, "a-gone") == []
    with engine.connect() as connection:
        left = connection.execute(
            sa.text(
                "SELECT count(*) FROM identities"
                " WHERE account_id = :a AND value IN ('a-gone', 'u-gone')"
            ),
            {"a": account.account_id},
        ).scalar()
    assert left == 0
    after = {
        g["event_name"]: g["count"]
        for g in client.get("/admin/queue", headers=auth(account)).json["groups"]
    }
    assert after.get("Signed Up", 0) == queued["Signed Up"] - 2
    assert lead_of(client, account, "kept@example.com")["signal_count"] == 1
    assert client.delete(f"/admin/leads/{lead['id']}", headers=auth(account)).status_code == 404
    # The person may come back: a new lead, from scratch.
    send(client, account, identify("gone@example.com", anonymousId="a-gone"))
    assert lead_of(client, account, "gone@example.com")["signal_count"] == 1


@BOTH_STORES
def test_an_unlinked_identifier_stays_off_its_lead_when_its_new_cluster_joins_it(client, account):
    send(client, account, identify("rep@example.com", anonymousId="a-laptop"))
    lead = lead_of(client, account, "rep@example.com")
    assert unlink(client, account, lead["id"], "anonymous_id", "a-laptop").status_code == 200
    # The device signs in as a userId, which later turns out to be the rep's.
    send(client, account, identify(None, anonymousId="a-laptop", userId="u-rep"))
    send(client, account, identify("rep@example.com", anonymousId=None, userId="u-rep"))

    after = lead_of(client, account, "rep@example.com")
    assert ("user_id", "u-rep") in identifiers(after)
    assert ("anonymous_id", "a-laptop") not in identifiers(after)
