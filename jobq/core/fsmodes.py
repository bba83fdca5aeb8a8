"""Modes of the files jobq creates: the SQLite database (SQLite gives its ``-wal`` and ``-shm``
the database file's mode), supervisor lock files, and the folder of workers' output.

Owner-only by default (``0600`` files, ``0700`` folders); ``file_mode`` in the configuration
sets another (``0640``: the folder is then ``0750``, read bits get their execute bit). The
mode is set on creation only, whatever the umask: an existing file or folder keeps its mode.
"""

from __future__ import annotations

import os
from typing import Any

DEFAULT_FILE_MODE = 0o600


def parse_file_mode(value: Any) -> int:
    """A file mode from an int (``0o640``, TOML's octal) or octal text (``"0640"``, ``"640"``).
    It must give the owner read and write and nothing beyond ``0777``."""
    if isinstance(value, bool):
        raise ValueError("expected an octal mode such as '0600' or '0640'")
    if isinstance(value, int):
        mode = value
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text or len(text) > 4 or any(c not in "01234567" for c in text):
            raise ValueError(f"not an octal mode: {value!r} (use e.g. '0600' or '0640')")
        mode = int(text, 8)
    else:
        raise ValueError("expected an octal mode such as '0600' or '0640'")
    if not 0 <= mode <= 0o777:
        raise ValueError(f"mode {value!r} is outside 0000-0777 (write octal as text, '0640', or as 0o640 in TOML)")
    if mode & 0o600 != 0o600:
        raise ValueError(f"mode {oct(mode)} must let the owner read and write (0600 at least)")
    return mode


def dir_mode(file_mode: int) -> int:
    """The folder mode that goes with ``file_mode``: each read bit gets its execute bit."""
    return file_mode | ((file_mode & 0o444) >> 2)


def create_file(path: str, mode: int = DEFAULT_FILE_MODE, flags: int = os.O_RDWR) -> int | None:
    """Create ``path`` with exactly ``mode`` and return an open descriptor; None when it
    already exists (it is left as it is)."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return None
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away, or left too many
    except OSError:
        os.close(fd)
        raise
    return fd


def open_or_create(path: str, mode: int = DEFAULT_FILE_MODE, flags: int = os.O_RDWR) -> int:
    """An open descriptor on ``path``, created with ``mode`` when missing."""
    fd = create_file(path, mode, flags)
    if fd is None:
        fd = os.open(path, flags)
    return fd


def ensure_database_file(path: str, mode: int = DEFAULT_FILE_MODE) -> bool:
    """Create an empty SQLite database file with ``mode`` when none exists (SQLite treats an
    empty file as an empty database); True when this call created it."""
    fd = create_file(path, mode, os.O_WRONLY)
    if fd is None:
        return False
    os.close(fd)
    return True


def prepare_database_file(url: str, mode: int = DEFAULT_FILE_MODE) -> bool:
    """For a SQLite database URL or path whose folder exists: create the file with ``mode``
    when missing (see :func:`ensure_database_file`). Server URLs are left alone."""
    if "://" in url and not url.startswith("sqlite:///"):
        return False
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else url
    if not path or path == ":memory:":
        return False
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(os.path.dirname(path)):
        return False  # the store reports the missing folder
    return ensure_database_file(path, mode)


def make_dir(path: str, file_mode: int = DEFAULT_FILE_MODE) -> None:
    """Create the folder ``path`` (its parent must exist) with :func:`dir_mode` of
    ``file_mode``; an existing folder keeps its mode."""
    mode = dir_mode(file_mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    os.chmod(path, mode)
