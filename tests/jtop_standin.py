"""A stand-in for jetson-stats' ``jtop`` module (no Jetson here), answering as its documented API does.

``jtop(interval=0.5)``; ``start()`` connects to the jtop service and raises ``JtopException`` when the
service is not running; ``close()``; ``memory["RAM"]`` with ``tot``, ``used``, ``free``, ``buffers``,
``cached`` and ``shared`` in kB. Anything else raises AttributeError, so a new jtop call in odperf fails
loudly here instead of passing.
"""

from __future__ import annotations

from types import ModuleType


class JtopException(Exception):
    """jtop's own error class (``from jtop import JtopException``)."""


def module(ram_kb: dict[str, int], service: bool = True) -> ModuleType:
    """A ``jtop`` module whose board holds ``ram_kb`` (mutable: a test changes it between reads)."""
    opened: list["jtop"] = []

    class jtop:  # noqa: N801 (jtop's own name)
        def __init__(self, interval: float = 0.5) -> None:
            self.interval = interval
            self.started = self.closed = False
            opened.append(self)

        def start(self) -> None:
            if not service:
                raise JtopException("The jetson_stats.service is not active. Please run:\n"
                                    "sudo systemctl restart jetson_stats.service")
            self.started = True

        def close(self) -> None:
            self.closed = True

        @property
        def memory(self) -> dict[str, dict[str, int]]:
            if not self.started or self.closed:
                raise JtopException("not connected to the jtop service")
            return {"RAM": dict(ram_kb)}

    out = ModuleType("jtop")
    out.jtop, out.JtopException, out.opened = jtop, JtopException, opened
    return out
