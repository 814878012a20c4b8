"""The documentation a clone carries is whole: every relative link leads to a file of the
repository, none outside it."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", REPO_ROOT / "sql" / "README.md", *REPO_ROOT.glob("docs/*.md")]
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_every_relative_link_leads_to_a_file_of_the_repository(doc):
    for target in _LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        resolved = (doc.parent / target).resolve()
        assert resolved.is_relative_to(REPO_ROOT.resolve()), f"{doc.name} links outside: {target}"
        assert resolved.exists(), f"{doc.name} links to a missing file: {target}"


def test_the_readme_points_to_the_reference():
    assert "](docs/reference.md" in (REPO_ROOT / "README.md").read_text()
