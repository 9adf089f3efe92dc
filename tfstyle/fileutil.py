"""Writing outputs so that a reader never sees a half-written or mixed set of files."""

import os
import tempfile
from typing import Mapping

from tfstyle.errors import InputError


def write_files_atomically(contents: Mapping[str, bytes]) -> None:
    """Writes every file to a temporary name beside it, then renames them all into place.

    If anything fails while writing, no destination is touched: a previous result stays whole and nothing partial
    appears. The renames come last and are atomic on one filesystem, so readers see old or new files, never a mix
    of a new WAV with a truncated one.

    Args:
        contents: destination path -> the bytes it should hold.
    """
    staged = []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, data in contents.items():
            folder = os.path.dirname(os.path.abspath(path))
            fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix="-" + os.path.basename(path))
            staged.append((tmp_path, path))
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp's private 0600 would otherwise outlive the rename
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for tmp_path, path in staged:
            os.replace(tmp_path, path)
        staged.clear()
    finally:
        for tmp_path, _ in staged:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)


def check_writable_output(path: str) -> None:
    """Raises InputError early when `path` cannot be written, before any long computation starts."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"output folder does not exist: {folder}")
    if os.path.isdir(path):
        raise InputError(f"output path is a folder, not a file: {path}")
    try:  # A real probe: os.access says yes to root even where the filesystem is read-only.
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise InputError(f"output folder is not writable: {folder} ({e.strerror})") from None
