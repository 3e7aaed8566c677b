"""pytest-benchmark's saved files (``--benchmark-json``, the ``--benchmark-save`` copy), written by odperf.

pytest-benchmark writes them at the end of the session with a plain ``open(path, "wb")`` (a full disk
leaves a truncated file where the previous good one was), writes neither when no benchmark reached timing
(a run whose every case ran out of memory or timed out loses all its records) and writes nothing under
pytest-xdist (where the accuracy benchmarks run). odperf takes both writes over at session start and
does them itself, atomically, whenever anything was measured, with pytest-benchmark's own hooks for the
content: the files are the ones pytest-benchmark would have written, plus the records it would have lost.
Both keep every round's time (``stats["data"]``, as ``--benchmark-save-data`` would): the gate tests a
change on the distribution of rounds, not on two summary figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odperf.util.atomic import write_atomic, write_numbered

DEFAULT_STORAGE = "file://./.benchmarks"


@dataclass
class Destinations:
    """Where the session's results go: the JSON file, and a saved-run name in a file storage."""

    json_path: Path | None
    save_name: str | None
    storage: Any = None  # pytest-benchmark's FileStorage

    @property
    def any(self) -> bool:
        return bool(self.json_path or self.save_name)


def storage_folder(option: str | None) -> Path | None:
    """The folder of a ``--benchmark-storage`` value, or None for a storage that is not a folder."""
    value = option or DEFAULT_STORAGE
    if "://" not in value:
        return Path(value)
    scheme, _, rest = value.partition("://")
    return Path(rest) if scheme == "file" else None


def json_target(value: Any) -> Path | None:
    """``--benchmark-json``'s value as a path: pytest-benchmark 5.3 parses it into one, 5.1 and 5.2 into a
    file it has already opened for writing (closed here: odperf writes the file itself, atomically)."""
    if not value:
        return None
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    value.close()
    return Path(value.name)


def take_over(session: Any) -> Destinations:
    """Take the writes from pytest-benchmark's session (its ``finish`` then saves nothing itself)."""
    file_storage = type(session.storage).__name__ == "FileStorage"
    save = (session.save or session.autosave) if file_storage else None
    dest = Destinations(json_path=json_target(session.json), save_name=save, storage=session.storage if save else None)
    session.json = None
    if save:
        session.save = session.autosave = None
    return dest


def measured(benchmarks: list[Any]) -> list[Any]:
    """The benchmarks with at least one round: one stopped (Ctrl-C, SIGTERM) inside its first round has
    none, and pytest-benchmark's statistics of no rounds raise, which lost the whole file. Its case's
    record, if any, stays in the ``odperf`` block."""
    return [b for b in benchmarks if getattr(getattr(b, "stats", None), "data", None)]


def write(config: Any, session: Any, dest: Destinations) -> list[str]:
    """Write every destination; a line per file written, and per file that could not be (the old one stays)."""
    from pytest_benchmark.utils import safe_dumps

    benchmarks = measured(session.benchmarks)
    machine_info = session.get_machine_info()
    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)

    def document(include_data: bool) -> str:
        out = config.hook.pytest_benchmark_generate_json(
            config=config, benchmarks=benchmarks, include_data=include_data,
            machine_info=machine_info, commit_info=commit_info,
        )
        config.hook.pytest_benchmark_update_json(config=config, benchmarks=benchmarks, output_json=out)
        return safe_dumps(out, ensure_ascii=True, indent=4)

    lines = []
    targets: list[tuple[str, Any]] = []
    if dest.json_path:
        targets.append(("--benchmark-json", lambda: write_atomic(dest.json_path, document(True))))
    if dest.save_name:
        # pytest-benchmark's own naming: <storage>/<machine id>/<NNNN>_<name>.json, NNNN the next free number;
        # a number another run took meanwhile is never overwritten (write_numbered)
        targets.append(("--benchmark-save", lambda: write_numbered(
            dest.storage.get(""), dest.save_name, document(True), start=int(dest.storage._next_num))))
    for option, make in targets:
        path = None
        try:
            path = make()
            lines.append(f"odperf: saved {path}")
        except OSError as exc:
            where = path or dest.json_path or dest.storage
            lines.append(f"odperf: ERROR: {option}: could not write {where} ({exc.strerror or exc}); "
                         "the previous file, if any, is unchanged")
    return lines
