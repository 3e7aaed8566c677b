"""Progress of a measuring run: per case, camera images timed of the total and the time left.

The library counts; a front end shows (the pytest plugin: one live line per case on a terminal, nothing
under -q, only the final line when the output is not a terminal). ``show`` receives each updated line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class CaseProgress:
    """One case: images done of ``total``; the time left is paced by the images after the first (the
    worker's start and warm-up come before it), so it shows from the second image on."""

    label: str
    total: int
    done: int = 0
    began: float = field(default_factory=time.monotonic)
    first_done: float | None = None
    last_done: float | None = None

    def image_done(self) -> None:
        now = time.monotonic()
        self.done += 1
        self.first_done = self.first_done or now
        self.last_done = now

    def line(self) -> str:
        head = f"{self.label}: {self.done}/{self.total} images"
        if self.last_done is None or self.first_done is None:
            return f"{head}, starting"
        if self.done >= self.total:
            return f"{head} in {self.last_done - self.began:.1f} s"
        if self.done == 1:
            return head
        pace = (self.last_done - self.first_done) / (self.done - 1)
        return f"{head}, ~{pace * (self.total - self.done):.0f} s left"


@dataclass
class Progress:
    """The run's cases in turn, and what they add up to."""

    show: Callable[[str], None] | None = None
    after_image: Callable[[], None] | None = None  # called after each timed image (the device watch)
    current: CaseProgress | None = None
    cases: int = 0
    images: int = 0
    began: float = field(default_factory=time.monotonic)

    def begin(self, label: str, total: int) -> None:
        self.current = CaseProgress(label, total)
        self._show()

    def image_done(self) -> None:
        if self.current is not None:
            self.current.image_done()
            self.images += 1
            self._show()
        if self.after_image is not None:
            self.after_image()

    def end(self) -> None:
        """The case is over (measured, or stopped by an out-of-memory or a crash)."""
        if self.current is not None:
            self.cases += 1
            self.current = None

    def summary(self) -> str | None:
        if not self.cases:
            return None
        return (f"odperf: {self.cases} case(s), {self.images} camera images timed, "
                f"{time.monotonic() - self.began:.0f} s")

    def _show(self) -> None:
        if self.show is not None and self.current is not None:
            self.show(self.current.line())
