"""Files that hold results: written whole or not at all, into folders checked before a run starts.

A results file is replaced atomically: the new content goes to a temporary file in the same folder, is
flushed to disk, and is renamed over the old one (``os.replace``). A full disk, a killed process or a
second signal therefore leaves the previous good file (or none), never a truncated one. Folders are
checked up front, so a run that cannot save is refused before it measures anything.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from odperf.errors import OdperfError


class StorageError(OdperfError):
    """A results file or folder that cannot be written."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Replace ``path`` with ``data`` in one step; on any failure the old file stays and no temp file is left."""
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; results are shared like any file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)
    return target


def write_numbered(folder: str | Path, name: str, data: bytes | str, start: int | None = None) -> Path:
    """Save ``data`` as a new ``NNNN_<name>.json`` in ``folder`` (pytest-benchmark's numbering: from ``start``,
    else one past the highest number there) and never over a saved run: the complete file is written under a
    temporary name, then hard-linked to its numbered name, which fails if that name exists (two saves at one
    instant), and the next number is tried. Where the file system has no hard links, the name is reserved
    with an exclusive create and the complete file renamed over that reservation."""
    where = Path(folder)
    number = start or next_number(where)
    tmp = write_atomic(where / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.saving", data)
    try:
        while True:
            target = where / f"{number:04d}_{name}.json"
            try:
                _link_new(tmp, target)
            except FileExistsError:
                number = max(number + 1, next_number(where))
                continue
            _sync_folder(where)
            return target
    finally:
        tmp.unlink(missing_ok=True)


def next_number(folder: Path) -> int:
    """One past the highest ``NNNN_`` of the saved runs in ``folder`` (1 in an empty or missing one)."""
    nums = [int(p.name[:4]) for p in folder.glob("[0-9][0-9][0-9][0-9]_*.json")] if folder.is_dir() else []
    return max(nums, default=0) + 1


def _link_new(tmp: Path, target: Path) -> None:
    """``target`` becomes ``tmp``'s content, or FileExistsError if it exists."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network and FUSE file systems): reserve, then replace
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        os.replace(tmp, target)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort: some filesystems refuse to open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_folder(folder: str | Path, what: str, *, create: bool, fix: str) -> Path:
    """``folder`` exists (created when ``create``) and takes a new file; else StorageError naming ``what``.

    Tried by writing a file, not by reading permission bits: only that answers for read-only mounts,
    full disks, quotas and root.
    """
    p = Path(folder).expanduser()
    if p.exists() and not p.is_dir():
        raise StorageError(f"{what} {p} is a file, not a folder; {fix}")
    if not p.is_dir():
        if not create:
            raise StorageError(f"{what} {p} does not exist; create it (mkdir -p {p}) or {fix}")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{what} {p} cannot be created ({exc.strerror}); {fix}") from None
    try:
        with tempfile.NamedTemporaryFile(prefix=".odperf-write-check-", dir=p) as fh:
            fh.write(b"odperf")
            fh.flush()
    except OSError as exc:
        raise StorageError(f"{what} {p} is not writable ({exc.strerror}); {fix}") from None
    return p


def check_file(path: str | Path, what: str, fix: str) -> Path:
    """A file odperf will (re)place at the end of a run: its folder must exist and be writable."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise StorageError(f"{what} {p} is a folder; give a file name, e.g. {p / 'run.json'}")
    check_folder(p.parent if str(p.parent) else Path("."), f"{what} {p}: its folder", create=False, fix=fix)
    return p
