"""The `receiver` command: the application's CLI (cli.py) as one console script. Above both
app.py and cli.py, so that neither imports the other's way back."""

from __future__ import annotations

import click
from flask.cli import FlaskGroup

from receiver.app import create_app


class ReceiverGroup(FlaskGroup):
    """The `receiver` command: Flask's group for its app context, without Flask's own options
    (`--app`, `--env-file`, `--debug`: the app is this one, settings come from the
    environment) and with the receiver's version."""

    FLASK_OPTIONS = frozenset({"app", "env_file", "debug"})

    def __init__(self) -> None:
        super().__init__(
            create_app=create_app,
            add_default_commands=False,
            add_version_option=False,
            load_dotenv=False,
            help="Identity-resolution webhook receiver and signal store.",
        )
        self.params = [p for p in self.params if p.name not in self.FLASK_OPTIONS]
        click.version_option(
            package_name="receiver", prog_name="receiver", message="%(prog)s %(version)s"
        )(self)


main = ReceiverGroup()
