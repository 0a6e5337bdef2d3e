"""What the product writes to disk is its operator's alone: folders 0700, files 0600.

Exports, the data dir and Dagster's home hold message counts, error texts and run logs; on a
shared host nobody else should read them. The process umask is not trusted (the usual 022 makes
every file world-readable), so modes are set explicitly here; the Dagster processes that
`notify-pipeline dev` starts run with CHILD_UMASK, which covers what Dagster writes itself
(compute logs, run storage) and has no mode setting for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
CHILD_UMASK = 0o077  # files 0600, folders 0700 in every process started with it


def make_dirs(path: Path) -> Path:
    """Create `path` and its missing parents, each new one 0700. Folders that already exist keep
    their mode: an export target may be shared on purpose."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(folder, PRIVATE_DIR)  # exact, whatever the umask
    return path


def own_dir(path: Path) -> Path:
    """A folder the product owns (the data dir, Dagster's home): created if missing and made 0700,
    also when an older version left it world-readable."""
    make_dirs(path)
    os.chmod(path, PRIVATE_DIR)
    return path


def open_private(path: Path, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """Open `path` for writing (truncated), 0600 from its first byte: no window in which another
    user could open it. A file that existed is made 0600 too."""
    if not mode.startswith("w"):
        raise ValueError(f"open_private writes files; mode {mode!r} is not a 'w' mode")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise
