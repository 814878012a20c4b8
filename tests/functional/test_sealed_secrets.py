"""Key secrets are sealed at rest with SECRET_KEY, and still check requests on both stores."""

from __future__ import annotations

import sqlalchemy as sa
from cryptography.fernet import Fernet

from receiver import sealing
from receiver.config import Settings
from tests.builders import track
from tests.conftest import TEST_SECRET_KEY
from tests.functional.test_admin_api import auth
from tests.functional.test_webhook import BOTH_STORES, post


def stored_secret(engine, account_id):
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT secret FROM api_keys WHERE account_id = :a AND secret IS NOT NULL"),
            {"a": account_id},
        ).scalar_one()


@BOTH_STORES
def test_a_secret_is_stored_sealed_and_still_checks_requests(client, account, engine):
    created = client.post("/admin/keys", json={"secret": "S3cret-sealed"}, headers=auth(account))
    assert created.status_code == 201 and created.json["has_secret"]
    stored = stored_secret(engine, account.account_id)
    assert stored.startswith("fernet:") and "S3cret-sealed" not in stored
    key = created.json["api_key"]
    assert post(client, key, track()).status_code == 401
    assert post(client, key, track(), headers={"X-Api-Secret": "nope"}).status_code == 401
    assert post(client, key, track(), headers={"X-Api-Secret": "S3cret-sealed"}).status_code == 200


def test_a_secret_stored_in_clear_by_an_earlier_release_still_works(client, account, engine):
    key = client.post("/admin/keys", json={"secret": "S3cret-clear"}, headers=auth(account)).json
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE api_keys SET secret = 'S3cret-clear' WHERE id = :id"),
            {"id": key["id"]},
        )
    headers = {"X-Api-Secret": "S3cret-clear"}
    assert post(client, key["api_key"], track(), headers=headers).status_code == 200
    with engine.begin() as connection:
        assert sealing.reseal_all(connection, only_clear=True).sealed >= 1
    assert stored_secret(engine, account.account_id).startswith("fernet:")
    assert post(client, key["api_key"], track(), headers=headers).status_code == 200


def test_resealing_moves_secrets_to_the_first_key(engine, account, client):
    key = client.post("/admin/keys", json={"secret": "S3cret-rotate"}, headers=auth(account)).json
    old = stored_secret(engine, account.account_id)
    new_key = Fernet.generate_key().decode()
    try:
        sealing.configure(Settings(secret_key=f"{new_key},{TEST_SECRET_KEY}"))
        with engine.begin() as connection:
            sealing.reseal_all(connection)
        sealing.configure(Settings(secret_key=new_key))
        assert stored_secret(engine, account.account_id) != old
        headers = {"X-Api-Secret": "S3cret-rotate"}
        assert post(client, key["api_key"], track(), headers=headers).status_code == 200
    finally:
        # Back to the suite's key, so that later tests and commands can open every secret.
        sealing.configure(Settings(secret_key=f"{TEST_SECRET_KEY},{new_key}"))
        with engine.begin() as connection:
            sealing.reseal_all(connection)
        sealing.configure(Settings(secret_key=TEST_SECRET_KEY))


def test_postgres_without_secret_key_stores_no_secret(client, account):
    try:
        sealing.configure(Settings(database_url="postgresql+psycopg://nowhere/x"))
        response = client.post("/admin/keys", json={"secret": "S3cret-none"}, headers=auth(account))
        assert response.status_code == 503 and "SECRET_KEY" in response.json["message"]
        listed = client.get("/admin/keys", headers=auth(account)).json
        assert not any(k["has_secret"] for k in listed)
    finally:
        sealing.configure(Settings(secret_key=TEST_SECRET_KEY))
