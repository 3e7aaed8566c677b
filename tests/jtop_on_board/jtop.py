"""A stand-in of jetson-stats' jtop client on a board, for tests/test_board.py (jtop's service runs only
on a Jetson), imported by the board's Python 3.6 through ``?jtop=`` (tests/jtop_standin.py is the host's,
in-process one, whose figures a test sets).

The same calls odperf makes on a board: ``jtop(interval=...)``, ``start()`` (``JtopException`` where the
service does not answer: here, where a file named ``service_down`` sits beside this one), ``memory``
(jetson-stats 4's ``{"RAM": {"used": kB, ...}}``, computed as its service does: MemTotal - MemFree -
Buffers - Cached of this machine's /proc/meminfo, refreshed every ``interval`` s) and ``close()``.
Python 3.6, like the board's interpreter it is imported by.
"""

import os
import threading

HERE = os.path.dirname(os.path.abspath(__file__))


class JtopException(Exception):
    pass


def _ram():
    fields = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0])
    used = fields["MemTotal"] - fields["MemFree"] - fields.get("Buffers", 0) - fields.get("Cached", 0)
    return {"tot": fields["MemTotal"], "used": used, "free": fields["MemFree"],
            "buffers": fields.get("Buffers", 0), "cached": fields.get("Cached", 0)}


class jtop(object):  # noqa: N801  (jetson-stats' own name)
    def __init__(self, interval=0.5):
        self.interval = float(interval)
        self._memory = {}
        self._stop = threading.Event()

    def start(self):
        if os.path.exists(os.path.join(HERE, "service_down")):
            raise JtopException("The jetson_stats.service is not active. Please run:\n"
                                "sudo systemctl restart jetson_stats.service")
        self._memory = {"RAM": _ram()}
        threading.Thread(target=self._refresh, daemon=True).start()

    def _refresh(self):
        while not self._stop.wait(self.interval):
            self._memory = {"RAM": _ram()}

    @property
    def memory(self):
        return self._memory

    def close(self):
        self._stop.set()
