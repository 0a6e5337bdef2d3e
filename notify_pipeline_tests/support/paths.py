"""Where the repository is, so a test reads README.md, docs/ or workspace.yaml without counting how
deep its own folder sits."""

from __future__ import annotations

from pathlib import Path

# support/ is one level under notify_pipeline_tests/, which is at the top of the repository.
REPO_ROOT = Path(__file__).resolve().parents[2]
