"""The pytest side of a measuring session: outputs checked up front, devices held, results never lost.

Registered by odperf's pytest plugin for a run that measures (not for ``--collect-only``, not inside an
xdist worker, whose controller does this). It checks that the results can be saved before anything is
measured, holds a lock per device to see other runs measuring on it, turns SIGTERM and SIGHUP into
Ctrl-C, shows each timed case's progress (one live line per case on a terminal, the status letter after
it; nothing under -q; off a terminal only the final line), carries the records of xdist workers to the
controller, and at the end writes the saved JSON itself (odperf.plugin.files) whatever ended the session.
"""

from __future__ import annotations

import contextlib
from typing import Any, Generator

import pytest

from odperf.plugin.files import Destinations, json_target, storage_folder, take_over, write
from odperf.plugin.interrupts import GracefulStop
from odperf.util.atomic import check_file, check_folder

RECORD_PROPERTY = "odperf_record"  # the record_property name under which a benchmark hands its record over


class MeasuringRun:
    def __init__(self, config: pytest.Config, state: Any) -> None:
        self.config = config
        self.state = state
        self.stop = GracefulStop()
        self.files: Destinations | None = None
        self.summary: list[str] = []
        self.failed_to_save = False
        self._progress_width = 0  # of the progress line on screen now (0: none yet for this case)

    # --- before anything is measured -----------------------------------------------------------------
    def check_outputs(self) -> None:
        """``--benchmark-json``: its folder must exist and take a file (found at the end, it costs the run)."""
        json_path = json_target(self.config.getoption("benchmark_json", None))
        if json_path:
            check_file(json_path, "--benchmark-json", fix="give a file in a writable folder")

    def check_storage(self) -> None:
        """The ``--benchmark-save`` storage folder: created now, and it must take a file."""
        saving = self.config.getoption("benchmark_save", None) or self.config.getoption("benchmark_autosave", None)
        folder = storage_folder(self.config.getoption("benchmark_storage", None))
        if saving and folder is not None:
            check_folder(folder, "--benchmark-storage folder", create=True,
                         fix="give --benchmark-storage=DIR a writable folder")

    def start(self) -> None:
        self.stop.install()

    # --- hooks ----------------------------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        bench = getattr(self.config, "_benchmarksession", None)
        if bench is not None:
            self.files = take_over(bench)
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None and self.config.get_verbosity() >= 0 and bool(tr.isatty):
            self.state.progress.show = self._show_progress
        self._say(self.state.hold_devices())
        self.state.progress.after_image = lambda: self._say(self.state.watch_devices())  # a run that joins meanwhile

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        params = getattr(getattr(item, "callspec", None), "params", {})
        case = params.get("odperf_case") or params.get("odperf_accuracy_case") or (params.get("odperf_stream_case") or (None,))[0]
        if case is not None:
            self._say(self.state.begin(case))
        if "odperf_case" in params:
            self._progress_width = 0
            self.state.progress.begin(case.id, self.state.images)

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        self.state.progress.end()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Under xdist, a worker's records come with its test reports: the controller keeps them."""
        if report.when != "call" or not self.config.pluginmanager.hasplugin("dsession"):
            return
        for name, value in report.user_properties:
            if name == RECORD_PROPERTY and isinstance(value, dict):
                self.state.add_reported(value)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, Any, Any]:
        self.stop.saving()  # a signal from here on waits: the files are written whole
        self.state.close_breakdown()
        try:
            self._save()
            if self.failed_to_save and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        finally:
            self.state.release_devices()
        return (yield)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        done = self.state.progress.summary() if self.config.get_verbosity() >= 0 else None
        lines = [done, *self.summary] if done else list(self.summary)
        sharing = self.state.sharing_summary()
        if sharing:
            lines.append(sharing)
        lines += self.state.end_lines()
        for line in lines:
            terminalreporter.write_line(line, red="ERROR" in line, yellow="WARNING" in line)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.state.release_devices()
        self.stop.restore()

    # --- internals ------------------------------------------------------------------------------------
    def _save(self) -> None:
        bench = getattr(self.config, "_benchmarksession", None)
        if self.files is None or bench is None or not self.files.any:
            return
        if not bench.benchmarks and not self.state.records:
            self.summary.append("odperf: nothing was measured: no results file written")
            return
        how = f" (stopped by {self.stop.stopped_by}: what was measured until then)" if self.stop.stopped_by else ""
        lines = write(self.config, bench, self.files)
        self.failed_to_save = any("ERROR" in line for line in lines)
        self.summary.extend(f"{line}{how}" if "ERROR" not in line else line for line in lines)

    def _show_progress(self, line: str) -> None:
        """The case's one line, rewritten in place; pytest's status letter follows it when the case ends."""
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            start = "\n" if self._progress_width == 0 else "\r"
            shown = line.ljust(self._progress_width)
            tr.write(start + shown, flush=True)
            writer = getattr(tr, "_tw", None)
            if writer is not None and hasattr(writer, "_current_line"):
                # pytest's writer counts every rewrite as more of the line; it right-aligns the [NN%] that
                # follows the status letter by that count, so it is told what the line now shows
                writer._current_line = shown
        self._progress_width = max(self._progress_width, len(line))

    def _say(self, lines: list[str]) -> None:
        """Lines straight to the terminal, also from inside a test phase (where output is captured)."""
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or not lines:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            tr.ensure_newline()
            for line in lines:
                tr.write_line(line, yellow=True)
