"""Paths a command reads, checked before they are opened: a regular file where a file is needed,
a folder where a folder is needed. A path that exists but is the wrong kind (a folder given as a
data file, a file given as a model folder, ``/dev/null``) gets a message saying what is there,
never "does not exist"; a named pipe is refused before a read could block on it.
"""

from __future__ import annotations

import stat
from pathlib import Path

from stillhouse.errors import fail


def what_is(path: Path) -> str:
    """What is at ``path`` (symlinks followed), in a message's words: ``a folder``, ``a file``…"""
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "neither a file nor a folder"


def require_file(path: Path, missing: str, not_a_file: str) -> Path:
    """``path`` when it is a regular file (symlinks followed). Otherwise raise ``missing`` (an
    :class:`~stillhouse.errors.Errors` template with ``{path}``) when nothing is there, or
    ``not_a_file`` (with ``{path}`` and ``{what}``) saying what is there instead."""
    if path.is_file():
        return path
    if not path.exists():
        raise fail(missing, path=path)
    raise fail(not_a_file, path=path, what=what_is(path))


def require_folder(path: Path, missing: str, not_a_folder: str) -> Path:
    """``path`` when it is a folder (symlinks followed); otherwise ``missing`` or
    ``not_a_folder`` as :func:`require_file` raises them."""
    if path.is_dir():
        return path
    if not path.exists():
        raise fail(missing, path=path)
    raise fail(not_a_folder, path=path, what=what_is(path))
