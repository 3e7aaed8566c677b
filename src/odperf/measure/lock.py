"""Who else is measuring on a device: one lock file per device and run, held (flock) while the run lasts.

Two benchmark runs on one device skew each other's times (by 50-140% measured on a shared CPU) without
either noticing. So each run holds an exclusive ``flock`` on a file of its own in the device's folder
(``/run/lock/odperf-locks/<device>/``: a fixed system-wide place, whatever ``$TMPDIR`` says; see
``lock_root``) and looks for files whose lock it cannot take: those belong to live runs. Both runs see each
other, whichever started first. The kernel drops a lock when its process dies, even by SIGKILL, so a file
left behind by a dead run is recognised as stale (its lock can be taken) and removed. A suite looks when it
starts, at the start of every case and after its timed camera images (at most every 2 s): a run that comes
and goes between two looks is seen by that run only.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LOCK_DIR_NAME = "odperf-locks"


@dataclass(frozen=True)
class Holder:
    """Another run measuring on the same device, as its lock file describes it."""

    pid: int
    command: str
    since: str  # local time the run took the device, ISO 8601

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"pid {self.pid} since {self.since}: {self.command}"


LOCK_DIR_ENV = "ODPERF_LOCK_DIR"
# Fixed, system-wide places, first usable wins: never $TMPDIR, which differs between runs (a CI job, a
# user's own TMPDIR) that share the device all the same. /run/lock (/var/lock) is the system's folder for
# lock files, open to every user; /dev/shm and /var/tmp where it is missing.
SYSTEM_LOCK_PLACES = ("/run/lock", "/var/lock", "/dev/shm", "/var/tmp", "/tmp")


def lock_root() -> Path:
    """The folder of all devices' lock folders: ``$ODPERF_LOCK_DIR`` if set, else ``odperf-locks`` in the
    first system-wide place that takes a folder, else in the temp dir (a machine with none of them)."""
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV])
    for place in SYSTEM_LOCK_PLACES:
        folder = Path(place) / LOCK_DIR_NAME
        if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
            return folder
        if not folder.exists() and Path(place).is_dir() and os.access(place, os.W_OK | os.X_OK):
            return folder
    return Path(tempfile.gettempdir()) / LOCK_DIR_NAME


def _shared_folder(folder: Path) -> Path:
    """Create ``folder`` open to every user, sticky like /tmp, so that another user's run can join."""
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(folder, 0o1777)
        except OSError:
            pass
    return folder


class DeviceLock:
    """This run's claim on one device ("cpu", "gpu:0"); ``others()`` lists the live runs sharing it."""

    def __init__(self, device: str, root: Path | None = None) -> None:
        self.device = device
        self.folder = (root or lock_root()) / device.replace(":", "")
        self.path: Path | None = None
        self._fd: int | None = None

    def acquire(self) -> "DeviceLock":
        """Create and lock this run's file (never blocks: the file is this run's own)."""
        if self._fd is not None:
            return self
        _shared_folder(self.folder.parent)
        _shared_folder(self.folder)
        # Locked and described under a name others ignore, then renamed: a file ending in .lock is never
        # seen unlocked while its run lives (else it could be taken for a stale one and removed).
        fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=".new", dir=self.folder)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        info = {"pid": os.getpid(), "command": " ".join(sys.argv)[:300],
                "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.write(fd, json.dumps(info).encode())
        os.fchmod(fd, 0o644)
        path = Path(name).with_suffix(".lock")
        os.rename(name, path)
        self._fd, self.path = fd, path
        return self

    def others(self) -> list[Holder]:
        """Live runs holding a lock on this device now; stale files of dead runs are removed."""
        try:
            names = sorted(self.folder.iterdir())
        except OSError:
            return []
        found = []
        for path in names:
            if path == self.path or path.suffix != ".lock":
                continue
            holder = _probe(path)
            if holder is not None:
                found.append(holder)
        return found

    def release(self) -> None:
        if self._fd is None:
            return
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd, self.path = None, None

    def __enter__(self) -> "DeviceLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _probe(path: Path) -> Holder | None:
    """The holder of ``path`` if its lock is taken; None (and the file removed) when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)  # flock needs no write access: another user's file works too
    except OSError:
        return None  # gone meanwhile (its run ended), or unreadable
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            return _holder(fd, path)
        try:
            path.unlink()  # stale: its run died without cleaning up
        except OSError:
            pass
        return None
    finally:
        os.close(fd)


def _holder(fd: int, path: Path) -> Holder:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        info = {}
    prefix = path.name.split("-", 1)[0]
    pid = info.get("pid") or (int(prefix) if prefix.isdigit() else 0)
    return Holder(pid=int(pid), command=str(info.get("command", "?")), since=str(info.get("since", "?")))
