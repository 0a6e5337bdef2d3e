"""The code location, loaded as Dagster loads it from workspace.yaml."""

from __future__ import annotations

import importlib

import dagster as dg
import yaml

from notify_pipeline_tests.support.paths import REPO_ROOT


def load_workspace_definitions() -> dg.Definitions:
    """Load the code location the way workspace.yaml tells Dagster to."""
    (entry,) = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"]
    target = entry["python_module"]
    return getattr(importlib.import_module(target["module_name"]), target["attribute"])
