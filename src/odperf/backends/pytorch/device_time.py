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

    def begin(self) -> Any:
        """Record a start event on the current stream; give it back to ``end`` after the call."""
        event = self._make()
        event.record()
        return event

    def end(self, started: Any) -> None:
        event = self._make()
        event.record()
        self._pending.append((started, event))

    def take(self) -> float | None:
        """Seconds the GPU spent on the calls since the last take, or None when there were none."""
        pending, self._pending = self._pending, []
        if not pending:
            return None
        total_ms = 0.0
        for started, ended in pending:
            ended.synchronize()
            total_ms += started.elapsed_time(ended)
        return total_ms / 1000.0
