"""Stopping a run without losing it: SIGTERM and SIGHUP end it as Ctrl-C does, and saving is never cut short.

A CI cancel, ``timeout`` or a batch scheduler stops a process with SIGTERM, whose default action kills it
on the spot: every case measured so far is lost. Raised as KeyboardInterrupt instead, the signal unwinds
the running case (its worker is stopped by its context manager) and lets the harness finish normally and
save what it has. Once saving has begun, further signals (SIGINT included) are held off until it is done,
so the files are written whole. Only SIGKILL remains fatal.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class GracefulStop:
    """Install in the main thread at the start of a run, ``saving()`` when results are written, ``restore()``."""

    def __init__(self) -> None:
        self.received: list[str] = []  # names of the signals that stopped or reached the run
        self._saving = False
        self._previous: dict[int, Any] = {}

    def install(self) -> bool:
        """Take over the signals; False (and nothing changed) outside the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return True

    def saving(self) -> None:
        """From now on signals are noted, not raised: the run is already finishing."""
        self._saving = True

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    @property
    def stopped_by(self) -> str | None:
        return self.received[0] if self.received else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        if self._saving:
            return
        raise KeyboardInterrupt(f"{signal.Signals(signum).name}: stopping; the results measured so far are saved")
