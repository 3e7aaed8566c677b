"""The GPU's own time for each model call, from CUDA events: how much of an image's time the device
spent, so the rest (tiling, batching, copies, post-processing, detections to numpy) is the host's.

An event pair brackets the model call on its stream; the elapsed time between them is the span on the
GPU's clock from the call's first queued work to its last, including any gap where the GPU waited for
the host to launch the next kernel (a host-bound model shows as a device span near its wall time). The
events are read only when the worker asks (``take``), after the timed region: reading them there adds no
synchronisation to the timed calls (their detections are already on the host, so the events are done).
"""

from __future__ import annotations

from typing import Any, Callable

MAX_PENDING = 256
"""Event pairs held before the older ones are folded into a sum: a camera image makes at most one pair per
tile (64), and is taken after each image; a stream, which calls the detector without taking, stays bounded."""


class CudaEventClock:
    """Sums the GPU time of the model calls since the last ``take``. ``make_event`` builds a timing event
    (``torch.cuda.Event(enable_timing=True)`` unless given)."""

    def __init__(self, make_event: Callable[[], Any] | None = None) -> None:
        if make_event is None:
            import torch

            def make_event() -> Any:
                return torch.cuda.Event(enable_timing=True)

        self._make = make_event
        self._pending: list[tuple[Any, Any]] = []
        self._folded_ms = 0.0
        self._folded = 0

    def begin(self) -> Any:
        """Record a start event on the current stream; give it back to ``end`` after the call."""
        event = self._make()
        event.record()
        return event

    def end(self, started: Any) -> None:
        event = self._make()
        event.record()
        if len(self._pending) >= MAX_PENDING:  # done long ago: their detections reached the host
            self._folded_ms += self._sum(self._pending)
            self._folded += len(self._pending)
            self._pending = []
        self._pending.append((started, event))

    @staticmethod
    def _sum(pairs: list[tuple[Any, Any]]) -> float:
        total = 0.0
        for started, ended in pairs:
            ended.synchronize()
            total += started.elapsed_time(ended)
        return total

    def take(self) -> float | None:
        """Seconds the GPU spent on the calls since the last take, or None when there were none."""
        pending, self._pending = self._pending, []
        folded, self._folded_ms, calls, self._folded = self._folded_ms, 0.0, self._folded, 0
        if not pending and not calls:
            return None
        return (folded + self._sum(pending)) / 1000.0
