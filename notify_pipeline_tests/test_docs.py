"""The operator docs stay in step with the code: the error-code table is the code's own."""

from __future__ import annotations

from notify_pipeline.whatsapp.errors import markdown_table
from notify_pipeline_tests.support.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"


def test_operations_guide_carries_the_current_error_code_table() -> None:
    text = (DOCS / "operations.md").read_text()
    table = text.split("<!-- error-codes:start -->")[1].split("<!-- error-codes:end -->")[0].strip()
    assert table == markdown_table()
