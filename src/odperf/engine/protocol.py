"""The parent <-> worker channel: newline-delimited JSON over a pair of dedicated pipes.

The worker's stdout and stderr belong to TensorFlow (its logging, oneDNN banners, CUDA warnings); the
protocol never touches them, so nothing TensorFlow prints can corrupt a message. The worker gets the two
pipe ends as extra file descriptors (``pass_fds``).
"""

from __future__ import annotations

import json
import os
import select
import time
from typing import Any


class ChannelClosed(Exception):
    """The other end closed its pipe: the worker exited or was killed."""


class ChannelTimeout(Exception):
    """No complete message arrived before the deadline."""


class Channel:
    """One reading fd and one writing fd carrying one JSON object per line."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = bytearray()

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.write_fd, view) :]
        except (BrokenPipeError, OSError) as exc:
            raise ChannelClosed(str(exc)) from exc

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message; ``ChannelTimeout`` after ``timeout`` seconds, ``ChannelClosed`` at EOF."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            line_end = self._buffer.find(b"\n")
            if line_end >= 0:
                line = bytes(self._buffer[:line_end])
                del self._buffer[: line_end + 1]
                return json.loads(line)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelTimeout(f"no message within {timeout:g} s")
                ready, _, _ = select.select([self.read_fd], [], [], left)
                if not ready:
                    continue
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                raise ChannelClosed("end of stream")
            self._buffer.extend(chunk)

    def pending(self) -> bool:
        """Whether a message (or part of one) is waiting to be read, without blocking."""
        return b"\n" in self._buffer or bool(select.select([self.read_fd], [], [], 0)[0])

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
