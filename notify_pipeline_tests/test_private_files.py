"""Files the product writes are its operator's alone (issue 18): exports, the data dir and Dagster's
home are 0600 files in 0700 folders whatever the umask, and the Dagster processes `notify-pipeline
dev` starts (umask 077) write their compute logs and run storage 0600/0700 too, where Dagster's
default under the usual umask 022 is 0644."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from notify_pipeline import dev
from notify_pipeline.reporting.export import export_summary

DAGSTER = str(Path(sys.executable).parent / "dagster")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual umask 022, under which a file opened without a mode is world-readable."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_exports_and_the_data_dir_are_private(db, tmp_path, monkeypatch, permissive_umask) -> None:
    out_dir = tmp_path / "exports" / "2026"
    written = export_summary(db, date(2026, 1, 1), date(2026, 1, 2), out_dir)
    assert {path.suffix for path in written} == {".csv", ".parquet"}
    assert {path: mode(path) for path in written} == {path: 0o600 for path in written}
    assert mode(out_dir) == mode(out_dir.parent) == 0o700, "folders the export made"
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    (again,) = export_summary(db, date(2026, 1, 1), date(2026, 1, 2), shared, ["csv"])
    assert (mode(shared), mode(again)) == (0o750, 0o600), "an operator's folder keeps its mode"

    data_dir = tmp_path / "new" / "data"
    monkeypatch.setenv("NOTIFY_DATA_DIR", str(data_dir))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dev.dagster_home()
    assert (mode(data_dir.parent), mode(data_dir), mode(home)) == (0o700, 0o700, 0o700)
    home.chmod(0o755)  # left world-readable by an older version
    assert mode(dev.dagster_home()) == 0o700


JOB_MODULE = """
import dagster as dg


@dg.op
def say(context) -> None:
    print("a line of compute output")
    context.log.info("a line of the run's log")


@dg.job
def hello() -> None:
    say()
"""


def test_dagster_processes_started_by_dev_write_private_files(tmp_path, permissive_umask) -> None:
    module = tmp_path / "hello_job.py"
    module.write_text(JOB_MODULE)
    home = tmp_path / "dagster_home"
    home.mkdir(mode=0o700)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("DAGSTER_POSTGRES_URL", None)
    child = dev.start_child([DAGSTER, "job", "execute", "-f", str(module), "-j", "hello"], env)
    assert child.wait(timeout=300) == 0
    written = [path for path in home.rglob("*") if path != home]
    logs = [path for path in written if path.suffix in (".out", ".err", ".complete")]
    assert logs, f"Dagster wrote compute logs: {sorted(map(str, written))}"
    open_to_others = {str(path.relative_to(home)): oct(mode(path)) for path in written if mode(path) & 0o077}
    assert open_to_others == {}, "files and folders readable by others"


def test_the_metrics_textfile_and_the_journal_are_not_world_readable(db, tmp_path, permissive_umask) -> None:
    from notify_pipeline.engine import journal, store
    from notify_pipeline.reporting import metrics

    textfile = metrics.write_textfile(db, tmp_path / "metrics" / "notify_pipeline.prom")
    # Group-readable for node_exporter's group, never by others; its folder the product's alone.
    assert (mode(textfile), mode(textfile.parent)) == (0o640, 0o700)
    folder = tmp_path / "journal" / "sender"
    path = journal.append(folder, "w", [store.Outcome("sent", 1, "sent", 0, 0, wa_message_id="wamid.1")])
    assert (mode(path), mode(folder), mode(folder.parent)) == (0o600, 0o700, 0o700)
