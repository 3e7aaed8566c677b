"""Other odperf runs on the same devices: this run's lock on each, who else measured there, and when.

Two runs timing on one device skew each other's figures. Each run holds a lock per target device while it
measures (``measure.lock.DeviceLock``) and looks at the others' at the start of each case and, while a case
runs, after its timed images; a newcomer is one warning line, and every record made while another run
measured on its device carries ``device_shared_with`` in the saved JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

SHARED_KEY = "device_shared_with"  # in a record's saved form: the other runs measuring on its device


@dataclass
class DeviceSharing:
    locks: dict[str, Any] = field(default_factory=dict)  # device -> DeviceLock held while measuring
    shared: dict[str, dict[int, Any]] = field(default_factory=dict)  # device -> {pid: Holder} seen
    _now: dict[str, list[Any]] = field(default_factory=dict)  # device -> holders seen during the running case
    _watched_at: float = 0.0  # time.monotonic() of the last ``watch`` look
    _by_record: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # id(record) -> holders

    def hold(self, devices: Iterable[str]) -> list[str]:
        """Take this run's lock on each device; one warning line per device another run measures on."""
        from odperf.measure.lock import DeviceLock

        for device in dict.fromkeys(devices):
            if device not in self.locks:
                self.locks[device] = DeviceLock(device).acquire()
        return [line for device in self.locks for line in self._lines(device, self._look(device))]

    def begin(self, device: str) -> list[str]:
        """Before a case on ``device``: note who else measures there now; a warning line for any newcomer."""
        if device not in self.locks:
            return []
        known = set(self.shared.get(device, {}))
        now = self._look(device)
        self._now[device] = now
        return self._lines(device, [h for h in now if h.pid not in known])

    def watch(self, every_s: float = 2.0) -> list[str]:
        """While a case runs (after its timed images, at most every ``every_s``): a warning line for each run
        that has started measuring on a held device since the last look."""
        now = time.monotonic()
        if now - self._watched_at < every_s:
            return []
        self._watched_at = now
        lines = []
        for device in self.locks:
            known = set(self.shared.get(device, {}))
            found = self._look(device)
            during = self._now.setdefault(device, [])  # the running case's record will say so too
            during += [h for h in found if h.pid not in {d.pid for d in during}]
            lines += self._lines(device, [h for h in found if h.pid not in known])
        return lines

    def release(self) -> None:
        for lock in self.locks.values():
            lock.release()
        self.locks.clear()

    def note(self, record: Any, device: str | None, known: list[dict[str, Any]] | None = None) -> None:
        """The other runs that measured on ``device`` while ``record`` was made (``known``: as another process
        of this run saw them)."""
        holders = {h["pid"]: h for h in known or []}
        if device is not None and device in self.locks:
            for h in [*self._now.get(device, []), *self._look(device)]:
                holders[h.pid] = h.to_dict()
        if holders:
            self._by_record[id(record)] = list(holders.values())

    def saved_form(self, record: Any, out: dict[str, Any]) -> dict[str, Any]:
        """``out`` (the record's saved fields) with the runs it shared its device with, where there were any."""
        if id(record) in self._by_record:
            out[SHARED_KEY] = self._by_record[id(record)]
        return out

    def seen(self) -> dict[str, list[dict[str, Any]]]:
        """Every other run seen on each device, for the saved JSON and its machine_info."""
        return {d: [h.to_dict() for h in holders.values()] for d, holders in self.shared.items()}

    def summary(self) -> str | None:
        """One line for the end of the run when another run shared a device with it."""
        if not self.shared:
            return None
        devices = ", ".join(f"{d} (pids {', '.join(map(str, sorted(h)))})" for d, h in self.shared.items())
        return (f"odperf: WARNING: devices shared with other odperf runs: {devices}; {len(self._by_record)} "
                f"record(s) marked {SHARED_KEY} in the saved JSON")

    def _look(self, device: str) -> list[Any]:
        found = self.locks[device].others()
        for holder in found:
            self.shared.setdefault(device, {})[holder.pid] = holder
        return found

    @staticmethod
    def _lines(device: str, holders: Sequence[Any]) -> list[str]:
        return [
            f"odperf: WARNING: another odperf run measures on {device} ({h.describe()}): both runs' timings are "
            f"skewed; the records made meanwhile say so ({SHARED_KEY}); run one at a time for figures to trust"
            for h in holders
        ]
