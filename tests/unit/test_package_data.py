"""A non-editable install (`pip install .`) ships every file the receiver reads at run time:
the SQL scripts and the console's templates and static files are not Python modules, so only
pyproject's package-data puts them in the wheel."""

from __future__ import annotations

import tomllib
from pathlib import PurePosixPath

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "receiver"


def test_package_data_covers_every_sql_template_and_static_file():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["receiver"]
    needed = [
        *PACKAGE.glob("sql/*"),
        *PACKAGE.glob("console/templates/**/*"),
        *PACKAGE.glob("console/static/**/*"),
    ]
    files = [path.relative_to(PACKAGE).as_posix() for path in needed if path.is_file()]
    assert any(name.endswith(".html") for name in files)
    missing = [name for name in files if not any(_covers(p, name) for p in patterns)]
    assert missing == []


def _covers(pattern: str, name: str) -> bool:
    # As setuptools globs it: `*` stays within one folder.
    path = PurePosixPath(name)
    return len(path.parts) == len(PurePosixPath(pattern).parts) and path.match(pattern)
