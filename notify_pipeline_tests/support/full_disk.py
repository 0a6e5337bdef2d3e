"""A disk that fills up, for journal fault tests: os.write raising ENOSPC for files under one folder
while a condition holds, in this process (FullDisk) or in a `notify-pipeline` CLI subprocess
started as `python -c "...import run_cli_on_a_disk_that_fills as run; run()" -- <arguments>`."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

FULL_FLAG = "NOTIFY_TEST_FULL_DISK_FLAG"  # the subprocess's journal is full while this file exists
FOLDER = "NOTIFY_TEST_FULL_DISK_FOLDER"


class FullDisk:
    """os.write fails with ENOSPC for files under `folder` while `is_full()`; the first failing
    write of each spell first takes half of what it was given, as a filling disk does."""

    def __init__(self, folder: Path, is_full) -> None:
        self.folder, self.is_full, self.torn = str(folder.resolve()), is_full, False
        self.real_write = os.write

    def write(self, fd: int, data) -> int:
        if self.is_full() and os.readlink(f"/proc/self/fd/{fd}").startswith(self.folder):
            if not self.torn and len(data) > 1:
                self.torn = True
                return self.real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.torn = False
        return self.real_write(fd, data)


def run_cli_on_a_disk_that_fills() -> None:
    """The `notify-pipeline` CLI with FullDisk on the folder $NOTIFY_TEST_FULL_DISK_FOLDER, full
    while the file $NOTIFY_TEST_FULL_DISK_FLAG exists (arguments after `--`)."""
    from notify_pipeline.cli.main import main

    flag = Path(os.environ[FULL_FLAG])
    disk = FullDisk(Path(os.environ[FOLDER]), flag.exists)
    os.write = disk.write
    main(sys.argv[sys.argv.index("--") + 1 :], prog_name="notify-pipeline")
