"""Run a child command so that a stopped parent never leaves it, or anything it started, behind.

``odperf bench`` runs the suite as a pytest child, which runs a worker per case. A CI cancel, ``timeout``
or a scheduler sends SIGTERM to the parent only: a child left running keeps measuring and skews whatever
runs next on the machine. So:

- SIGTERM, SIGINT and SIGHUP to the parent are forwarded to the child as ``stop_signal`` (SIGINT: pytest's
  own clean stop, which ends the running case, closes its worker and still writes the JSON of the cases
  that finished). A second signal, or a child still running ``grace_s`` later, kills the child's group.
- The child is its own process group, and the kernel sends it ``stop_signal`` if the parent dies
  (PR_SET_PDEATHSIG), even by SIGKILL. Its workers die with it the same way (the engine sets theirs).
- The parent is a child subreaper while the child runs: anything of the run orphaned on the way is
  re-parented here, and is killed and reaped when the child ends.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Sequence

import psutil

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
ORPHAN_GRACE_S = 3.0
STOP_GRACE_S = 120.0  # a stopped pytest closes its worker (2 s), ends its case and writes its JSON
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass
class ChildExit:
    """How the child ended, and what the parent had to do about it."""

    returncode: int
    stopped_by: int | None = None  # the signal the parent received and forwarded, if any
    killed: bool = False  # the child outlived its grace (or a second signal came) and its group was killed
    leftovers: list[str] = field(default_factory=list)  # processes of the run still alive after the child

    @property
    def interrupted(self) -> bool:
        return self.stopped_by is not None


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def run_child(
    cmd: Sequence[str], cwd: str | os.PathLike[str] | None = None, *, grace_s: float = STOP_GRACE_S,
    stop_signal: int = signal.SIGINT, name: str = "child",
) -> ChildExit:
    """Run ``cmd`` to its end, or until the parent is signalled: then stop it as described above.
    Call it from the main thread (Python handles signals there only)."""
    parent = os.getpid()

    def in_child() -> None:  # between fork and exec
        os.setpgid(0, 0)
        _prctl(_PR_SET_PDEATHSIG, int(stop_signal))
        if os.getppid() != parent:  # the parent died before the line above could cover it
            os._exit(128 + int(stop_signal))
        for s in FORWARDED:  # a background job's ignored SIGINT would make the stop signal a no-op
            signal.signal(s, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)

    def on_signal(signum: int, _frame: object) -> None:
        raise _Stop(signum)

    subreaper = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    before = {c.pid for c in psutil.Process().children()}
    previous = {s: signal.getsignal(s) for s in FORWARDED}
    # Blocked until the child's handle is known: a signal in between is delivered right after, not lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        for s in FORWARDED:
            signal.signal(s, on_signal)
        proc = subprocess.Popen(list(cmd), cwd=cwd, preexec_fn=in_child)  # noqa: PLW1509 (pgid, pdeathsig)
    except BaseException:
        _restore(previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        raise
    result = ChildExit(returncode=0)

    def kill_now(signum: int, _frame: object) -> None:  # a second signal (or a late first one): no more waiting
        result.killed = True
        if result.stopped_by is None:
            result.stopped_by = signum
        _signal_group(proc.pid, signal.SIGKILL)

    try:
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
            result.returncode = proc.wait()
        except _Stop as stop:
            for s in FORWARDED:
                signal.signal(s, kill_now)
            result.stopped_by = stop.signum
            print(f"odperf: {signal.Signals(stop.signum).name} received: stopping {name} (pid {proc.pid}) with "
                  f"{signal.Signals(stop_signal).name} so that it saves what it measured (at most {grace_s:g} s)",
                  file=sys.stderr, flush=True)
            _signal_group(proc.pid, stop_signal, only_leader=True)
            try:
                result.returncode = proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                result.killed = True
                _signal_group(proc.pid, signal.SIGKILL)
                result.returncode = proc.wait()
    finally:
        for s in FORWARDED:
            signal.signal(s, kill_now)
        _signal_group(proc.pid, signal.SIGKILL)  # whatever is left of the child's group
        if proc.poll() is None:
            proc.wait()
        if subreaper:
            result.leftovers = _reap_orphans(before)
            _prctl(_PR_SET_CHILD_SUBREAPER, 0)
        _restore(previous)
    return result


def _signal_group(pgid: int, signum: int, only_leader: bool = False) -> None:
    try:
        if only_leader:
            os.kill(pgid, signum)
        else:
            os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _restore(previous: dict[int, object]) -> None:
    for s, handler in previous.items():
        signal.signal(s, handler)  # type: ignore[arg-type]


def _reap_orphans(before: set[int]) -> list[str]:
    """Kill and reap what the run orphaned (re-parented here as subreaper; the caller's own children in
    ``before`` are left alone); describe each one found."""
    me, found = psutil.Process(), []
    for _ in range(10):  # an orphan's own children come here in turn once it is gone
        orphans = [c for c in me.children() if c.pid not in before]
        if not orphans:
            break
        # A worker whose parent just died is dying of its own accord (its parent-death signal, or it finds
        # its parent gone as it starts): give it a moment, and count only what would not go by itself.
        _, still = psutil.wait_procs([d for c in orphans for d in _tree(c)], timeout=ORPHAN_GRACE_S)
        for proc in still:
            try:
                found.append(f"{proc.pid} ({' '.join(proc.cmdline())[:120]})")
                proc.kill()
            except psutil.Error:
                continue
        for c in orphans:
            try:
                os.waitpid(c.pid, 0)
            except ChildProcessError:
                pass
    return list(dict.fromkeys(found))


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []
