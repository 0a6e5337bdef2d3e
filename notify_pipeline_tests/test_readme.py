"""The README documents every environment variable the product reads, and the two commands."""

from __future__ import annotations

from notify_pipeline import settings
from notify_pipeline_tests.support.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_every_environment_variable_is_in_the_configuration_table() -> None:
    missing = [name for name in settings.ENVIRONMENT if f"| `{name}` |" not in README]
    assert missing == []


def test_readme_gives_the_two_commands() -> None:
    assert "make dev" in README
    assert "make test" in README
