"""The `receiver` command (also reachable as `flask --app wsgi <command>`)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlmodel import Session
from werkzeug.serving import run_simple

from receiver import accounts, analysts, db, logs, progress, retention, sealing
from receiver.browser import origins_problem
from receiver.config import current_settings
from receiver.credentials import Credential
from receiver.identity.resolve import identity_policy
from receiver.rules import backfill, worker

# Read by create-account in place of --secret: an argument shows in `ps` and shell history.
SECRET_ENVVAR = "RECEIVER_KEY_SECRET"


def echo(line: str) -> None:
    click.echo(line)


@click.command("init-db")
@click.option(
    "--analyst-role",
    metavar="NAME",
    default=None,
    help="Postgres: create (or update) a role that reads the analyst views and nothing else.",
)
@click.option(
    "--analyst-account",
    "analyst_accounts",
    metavar="ACCOUNT_ID",
    type=click.IntRange(min=1),
    multiple=True,
    help="With --analyst-role: the account(s) it sees (row-level security); default all.",
)
@with_appcontext
def init_db_command(analyst_role: str | None, analyst_accounts: tuple[int, ...]) -> None:
    """Create or upgrade the schema; safe to run again, keeps all data. Seals key secrets
    stored in clear by an earlier release, once there is a key to seal them with."""
    if analyst_accounts and not analyst_role:
        raise click.UsageError("--analyst-account needs --analyst-role")
    engine = db.engine_of(current_app)
    db.upgrade_schema(engine, echo, current_settings().score_window_days)
    _analyst_access(engine, analyst_role, analyst_accounts)
    if sealing.has_keyring():
        with engine.begin() as connection:
            sealed = sealing.reseal_all(connection, only_clear=True).sealed
        if sealed:
            echo(f"secrets: {sealed} stored in clear sealed with SECRET_KEY")


def _analyst_access(engine: sa.Engine, role: str | None, account_ids: tuple[int, ...]) -> None:
    try:
        with engine.begin() as connection:
            if role is not None:
                analysts.grant_analyst(connection, role, account_ids)
                scope = ", ".join(map(str, account_ids)) or "every account"
                echo(f"analysts: {role} reads the views, of {scope}")
            elif analysts.is_set_up(connection):
                analysts.apply_access(connection)
                echo("analysts: access to the views renewed")
    except analysts.AnalystSetupError as error:
        raise click.ClickException(str(error)) from None
    except sa.exc.DBAPIError as error:
        raise click.ClickException(
            f"analyst access needs a role that may create roles: {error.orig}"
        ) from None


@click.command("create-account")
@click.argument("name")
@click.option("--plan", default=None, help="Plan name (default: the DEFAULT_PLAN setting).")
@click.option(
    "--signal-limit",
    type=click.IntRange(min=0),
    default=None,
    help="Raw signals per calendar month (default: DEFAULT_SIGNAL_LIMIT).",
)
@click.option(
    "--secret",
    default=None,
    envvar=SECRET_ENVVAR,
    show_envvar=True,
    callback=lambda _context, _option, secret: _checked_secret(_read_secret(secret)),
    help=f"Shared secret the API key requires ({accounts.SECRET_MIN_LENGTH} to "
    f"{accounts.SECRET_MAX_LENGTH} characters). `-` reads it from standard input; "
    f"so does the {SECRET_ENVVAR} variable keep it out of `ps` and the shell history.",
)
@with_appcontext
def create_account_command(
    name: str, plan: str | None, signal_limit: int | None, secret: str | None
) -> None:
    """Create an account with one API key and one admin token; prints them as JSON, once."""
    settings = current_settings()
    try:
        created = db.run_transaction(
            db.engine_of(current_app),
            lambda session: accounts.create_account(
                session,
                name,
                plan or settings.default_plan,
                settings.default_signal_limit if signal_limit is None else signal_limit,
                settings.cold_retention_days,
                datetime.now(UTC),
                secret,
            ),
        )
    except sealing.NoSecretKey as refused:
        raise click.ClickException(refused.message) from None
    click.echo(json.dumps(created.as_json()))


def _read_secret(secret: str | None) -> str | None:
    """`-` stands for standard input: its first line, without the line break."""
    if secret != "-":
        return secret
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise click.BadParameter("standard input held no secret.")
    return line


def _checked_secret(secret: str | None) -> str | None:
    if secret is not None and not (
        accounts.SECRET_MIN_LENGTH <= len(secret) <= accounts.SECRET_MAX_LENGTH
    ):
        raise click.BadParameter(
            f"must be {accounts.SECRET_MIN_LENGTH} to {accounts.SECRET_MAX_LENGTH} characters, "
            "as for keys made through the admin API."
        )
    return secret


@click.command("create-key")
@click.argument("account_id", type=click.IntRange(min=1))
@click.option(
    "--secret",
    default=None,
    callback=lambda _context, _option, secret: _checked_secret(secret),
    help="Shared secret the new server key requires.",
)
@click.option(
    "--browser",
    is_flag=True,
    help="A browser key (public, no secret, honoured only from the --origin values).",
)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    metavar="ORIGIN",
    help="An origin a browser key is used from (scheme://host[:port], or '*'); repeatable.",
)
@with_appcontext
def create_key_command(
    account_id: int, secret: str | None, browser: bool, origins: tuple[str, ...]
) -> None:
    """Create another API key for an account; prints it as JSON, once."""
    if origins and not browser:
        raise click.UsageError("--origin is for browser keys: add --browser.")
    if browser and secret is not None:
        raise click.UsageError("A browser key is public and has no secret: drop --secret.")
    if browser and (problem := origins_problem(list(origins))):
        raise click.BadParameter(problem, param_hint="--origin")
    created = db.run_transaction(
        db.engine_of(current_app),
        lambda session: accounts.create_key(
            session, account_id, datetime.now(UTC), secret, list(origins) if browser else None
        ),
    )
    if created is None:
        raise click.ClickException(f"no account {account_id}")
    click.echo(json.dumps(created))


@click.command("revoke-key")
@click.argument("key")
@with_appcontext
def revoke_key_command(key: str) -> None:
    """Revoke an API key: its requests answer 401 from now on."""
    revoked = db.run_transaction(
        db.engine_of(current_app),
        lambda session: accounts.revoke_api_key(session, key, datetime.now(UTC)),
    )
    if not revoked:
        raise click.ClickException("no such API key")
    click.echo("revoked")


@click.command("create-admin-token")
@click.argument("account_id", type=click.IntRange(min=1))
@with_appcontext
def create_admin_token_command(account_id: int) -> None:
    """Give an account another admin token (its others stay valid); prints it as JSON, once."""

    def create(session: Session) -> Credential | None:
        if not accounts.account_exists(session, account_id):
            return None
        return accounts.create_admin_token(session, account_id, datetime.now(UTC))[0]

    token = db.run_transaction(db.engine_of(current_app), create)
    if token is None:
        raise click.ClickException(f"no account {account_id}")
    click.echo(json.dumps({"account_id": account_id, "admin_token": token.text}))


@click.command("revoke-admin-token")
@click.argument("token")
@with_appcontext
def revoke_admin_token_command(token: str) -> None:
    """Revoke an admin token, even an account's last one: it answers 401 from now on."""
    revoked = db.run_transaction(
        db.engine_of(current_app),
        lambda session: accounts.revoke_admin_token(session, token, datetime.now(UTC)),
    )
    if not revoked:
        raise click.ClickException("no such admin token")
    click.echo("revoked")


@click.command("new-secret-key")
def new_secret_key_command() -> None:
    """Print a new key for SECRET_KEY (it needs no store)."""
    click.echo(sealing.new_key())


@click.command("rotate-secret-key")
@with_appcontext
def rotate_secret_key_command() -> None:
    """Seal every key secret again with the first key of SECRET_KEY. Rotate by putting a new
    key first (SECRET_KEY=new,old), running this, then dropping the old key."""
    if not sealing.has_keyring():
        raise click.ClickException(sealing.NoSecretKey.message)
    with db.engine_of(current_app).begin() as connection:
        resealed = sealing.reseal_all(connection)
    click.echo(f"secrets: {resealed.sealed} sealed with the first key of SECRET_KEY")
    if resealed.unopenable:
        raise click.ClickException(
            f"{resealed.unopenable} secrets were sealed with no key SECRET_KEY holds and are left "
            "as they were: put their key back in SECRET_KEY, or give those keys new secrets"
        )


@click.command("purge-cold")
@click.option(
    "--older-than",
    "older_than",
    type=click.IntRange(min=0),
    default=None,
    metavar="DAYS",
    help="Instead of each account's retention (90 days unless set).",
)
@with_appcontext
def purge_cold_command(older_than: int | None) -> None:
    """Delete cold-storage signals received longer ago than the retention."""
    retention.purge_cold(
        db.engine_of(current_app),
        datetime.now(UTC),
        echo,
        older_than,
        terminal=progress.on_terminal(),
    )


@click.command("run-backfills")
@click.option(
    "--watch",
    is_flag=True,
    help="Keep running, as each process's worker does: for BACKFILL_WORKER=0 deployments.",
)
@with_appcontext
def run_backfills_command(watch: bool) -> None:
    """Run the pending backfills, and those whose runner stopped (a crash, a restart)."""
    settings = current_settings()
    if watch:
        worker.BackfillWorker(settings).run_forever()
        return
    ran = backfill.run_pending(
        db.engine_of(current_app),
        identity_policy(settings),
        settings.backfill_max_per_account,
        echo=echo,
    )
    echo(f"backfills run: {ran}")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@with_appcontext
def serve_command(host: str, port: int) -> None:
    """Development server: upgrades the schema, creates a first account if there is none and
    prints its webhook URL and admin token, then serves. Production runs gunicorn."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    engine = db.engine_of(app)
    db.upgrade_schema(engine, echo, current_settings().score_window_days)
    if not db.run_transaction(engine, accounts.any_account):
        settings = current_settings()
        created = db.run_transaction(
            engine,
            lambda session: accounts.create_account(
                session,
                "default",
                settings.default_plan,
                settings.default_signal_limit,
                settings.cold_retention_days,
                datetime.now(UTC),
            ),
        )
        click.echo(f"account {created.account_id} created; shown once, keep them:")
        click.echo(f"  webhook URL:  http://{host}:{port}/webhook/{created.api_key}")
        click.echo(f"  admin token:  {created.admin_token}")
    else:
        click.echo("accounts exist; `receiver create-account NAME` makes another")
    worker.start_for(app)
    # app.run() does nothing under the flask CLI, which this command is part of.
    run_simple(host, port, app, threaded=True, request_handler=logs.DevRequestHandler)


def init_app(app: Flask) -> None:
    for command in (
        init_db_command,
        create_account_command,
        create_key_command,
        revoke_key_command,
        create_admin_token_command,
        revoke_admin_token_command,
        new_secret_key_command,
        rotate_secret_key_command,
        purge_cold_command,
        run_backfills_command,
        serve_command,
    ):
        app.cli.add_command(command)
