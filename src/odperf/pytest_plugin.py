"""odperf's pytest plugin: glue between pytest / pytest-benchmark and the library.

Installed, pytest loads it through its ``pytest11`` entry point (named ``odperf.pytest_plugin``, so a
conftest.py or ``-p`` naming the module finds it registered). It reads the ``--odperf-*`` options and has
the library check them, the dataset, the models and every output path once, before any worker starts (a
fault is one usage-error line), for any run whose paths hold benchmarks taking its case fixtures (the
shipped suite or a team's own files: odperf.plugin.discovery); parametrises the benchmarks
with machine-independent ids and hardware markers (all registered here); puts the hardware into
pytest-benchmark's machine_info; keeps saved runs apart per hardware profile; holds a lock per device to
see other runs measuring on it; turns SIGTERM into Ctrl-C; and writes the saved JSON itself, atomically,
with odperf's records (including runs that never reached timing, and those of xdist workers); hands
pytest-benchmark each case's plain parameters; shows each case's progress. Its state lives in
``config.stash``. It computes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from odperf.plugin.discovery import MEASURED_FIXTURES, arg_paths, names_stream_module, reaches_benchmarks
from odperf.plugin.files import DEFAULT_STORAGE, json_target
from odperf.errors import OdperfError

_STATE = pytest.StashKey[Any]()  # the run's odperf.suite.state.SuiteState, once built
_STREAM_PLAN = pytest.StashKey[Any]()  # the streaming pass's odperf.stream.cases.StreamPlan, once built
TIMING_MARKER = "timing"  # what the timing benchmarks carry: pytest-benchmark saves nothing under xdist
STREAM_MARKER = "stream"  # the streaming benchmarks: timed as well, so refused under xdist too
PIPELINE_MARKER = "pipeline"  # cameras through a broker to detector instances (benchmarks/test_pipeline.py)
_XDIST_MESSAGE = (
    "odperf: timing benchmarks refuse pytest-xdist (-n {n}): pytest-benchmark disables itself under xdist "
    "and silently saves no JSON. Run timing with one process per device (-p no:xdist, or -n 0); use -n only "
    "for the untimed accuracy benchmarks (-m accuracy) and the library's tests."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    from odperf.measure.scorers import DEFAULT_SCORER, SCORERS

    g = parser.getgroup("odperf", "odperf: object-detection benchmarks")
    g.addoption("--odperf-models", default="embedded", metavar="SEL[,SEL...]",
                help="models: registry names, meta-architectures (ssd, faster_rcnn...), mAP groups "
                     "(highest..lowest), embedded, paper, tf2, all, or paths to exported detectors, named "
                     "by their folder (<name>/saved_model) or as NAME=PATH (default: embedded)")
    g.addoption("--odperf-batch-sizes", default="paper", metavar="B[,B...]",
                help="tiles per model call (default: the paper's 1,2,4,8,16,32,64)")
    g.addoption("--odperf-devices", default="all", metavar="DEV[,DEV...]",
                help="cpu, gpu (= gpu:0), gpu:N, or all detected devices (default)")
    g.addoption("--odperf-images", type=int, default=None, metavar="N",
                help="camera images timed per case, one benchmark round each: a fixed count (default: chosen "
                     "per case, see --odperf-min-images, --odperf-max-images, --odperf-target-ci)")
    g.addoption("--odperf-min-images", type=int, default=None, metavar="N",
                help="without --odperf-images: the fewest camera images a case times (default 3)")
    g.addoption("--odperf-max-images", type=int, default=None, metavar="N",
                help="without --odperf-images: the most camera images a case times (default: a car, 95)")
    g.addoption("--odperf-target-ci", type=float, default=None, metavar="FRACTION",
                help="without --odperf-images: stop timing a case once the 95%% confidence interval of its mean "
                     "time per image is within this fraction of the mean (default 0.03: +/-3%%)")
    g.addoption("--odperf-warmup-images", type=int, default=1, metavar="N",
                help="camera images run before timing, outside the rounds (default 1)")
    g.addoption("--odperf-warmup-steady", type=float, default=None, metavar="FRACTION",
                help="after --odperf-warmup-images, warm up on until 3 images in a row agree within this fraction "
                     "of their median (0.05: 5%%), for at most 30 warm-up images (engine.request.MAX_WARMUP_IMAGES); "
                     "recorded in runtime_settings (default: off)")
    g.addoption("--odperf-model-dir", default=None, metavar="DIR",
                help="folder of extracted model-zoo tarballs (default: $ODPERF_MODEL_DIR or ~/.cache/odperf/models)")
    g.addoption("--odperf-dataset", default=None, metavar="DIR",
                help="COCO-format dataset root (annotations/instances_<split>.json + <split>/); "
                     "default: the embedded synthetic dataset")
    g.addoption("--odperf-split", default=None, metavar="SPLIT",
                help="dataset split (default: val for the embedded dataset, val2017 for a COCO root)")
    g.addoption("--odperf-accuracy", action="store_true", default=False,
                help="also compute COCO mAP from the timed images (one JSON holds both)")
    g.addoption("--odperf-scorer", default=DEFAULT_SCORER, choices=SCORERS,
                help="COCO scorer for mAP: faster-coco-eval (default, the same figures several times faster) or "
                     "pycocotools (the paper's reference); the record names the one used")
    g.addoption("--odperf-results-dir", default=None, metavar="DIR",
                help="with accuracy on: write each case's detections as COCO results (camera-image "
                     "coordinates) to DIR/<case id>.json")
    g.addoption("--odperf-emulate", default=None, metavar="PROFILE|NAME:MB",
                help="emulate a smaller device by capping memory: a GPU profile at its nominal memory on a "
                     "larger GPU (p100, filed as p100_on_<gpu>), or NAME:MB under a name of its own (e.g. "
                     "cpu_400mb:400, the only kind a CPU can emulate); marked 'emulated' and recorded")
    g.addoption("--odperf-expectations", action="append", default=None, metavar="FILE",
                help="expectations TOML (deadlines, OOM, mAP floors); repeatable; "
                     "default fixtures/expectations.toml")
    g.addoption("--odperf-timeout", type=float, default=1800.0, metavar="SECONDS",
                help="limit per measured case, worker start included (default 1800)")
    g.addoption("--odperf-sample-ms", type=float, default=10.0, metavar="MS",
                help="memory sampling period (default 10 ms, as the paper)")
    g.addoption("--odperf-seed", type=int, default=0, metavar="N", help="camera-image seed (default 0)")
    g.addoption("--odperf-board", action="append", default=None,
                metavar="[PROFILE=]ssh://[user@]host[:port][?python=PATH] or NAME",
                help="a board driven over SSH (odperf.measure.board), or a [[board]] entry's NAME in the device "
                     "table ODPERF_DEVICES names: its cases carry its profile's markers (-m tx2)")
    g.addoption("--odperf-stream-scenarios", default="all", metavar="S[,S...]",
                help="benchmarks/test_stream.py: single_stream, multi_stream, server, offline, peak, or all")
    g.addoption("--odperf-stream-budget", default="quick", metavar="NAME",
                help="LoadGen run lengths: quick (default, minutes per pass), smoke (CI), mlperf (MLPerf's own)")
    g.addoption("--odperf-stream-prefetch", action="store_true", default=False,
                help="fill the next batch in a thread while the model runs the current one")
    g.addoption("--odperf-pipeline", default="", metavar="KEY=VALUE[,...]",
                help="benchmarks/test_pipeline.py: odperf.pipeline.settings fields, e.g. instances=2,cars=1")
    g.addoption("--odperf-stream-logs", default=None, metavar="DIR",
                help="LoadGen's log files (default: beside --benchmark-json, else .benchmarks/loadgen)")


def _options(config: pytest.Config) -> dict[str, Any]:
    names = ("models", "batch_sizes", "devices", "images", "min_images", "max_images", "target_ci", "warmup_images", "warmup_steady", "model_dir", "dataset", "split",
             "accuracy", "emulate", "results_dir", "expectations", "scorer")
    out = {n: config.getoption(f"odperf_{n}") for n in names}
    out.update(timeout_s=config.getoption("odperf_timeout"), sample_period_ms=config.getoption("odperf_sample_ms"),
               seed=config.getoption("odperf_seed"), boards=config.getoption("odperf_board"))
    return out


def _state(config: pytest.Config, check: bool = True):
    """The run's SuiteState, built once (checks included) where the run is set up: `pytest tests` never pays
    for it, and an xdist worker rebuilds it without the checks its controller already made."""
    state = config.stash.get(_STATE, None)
    if state is None:
        from odperf.suite.state import SuiteState

        try:
            state = SuiteState.from_options(**_options(config), check=check)
        except OdperfError as exc:
            raise pytest.UsageError(f"odperf: {exc}") from None
        config.stash[_STATE] = state
        _register_markers(config, state.markers())
    return state


def _register_markers(config: pytest.Config, markers: dict[str, str]) -> None:
    known = {line.split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")}
    for name, description in markers.items():
        if name not in known:
            config.addinivalue_line("markers", f"{name}: {description}")


def _xdist_workers(config: pytest.Config) -> Any:
    n = getattr(config.option, "numprocesses", None)
    if os.environ.get("PYTEST_XDIST_WORKER"):  # as pytest-benchmark decides that it is disabled
        return os.environ.get("PYTEST_XDIST_WORKER_COUNT", "?")
    return n if n not in (None, 0, "0") else None


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _arg_paths(config: pytest.Config) -> list[Path]:
    return arg_paths(config.args or [str(config.invocation_params.dir)], config.invocation_params.dir,
                     bool(config.option.pyargs))


def _collects_benchmarks(config: pytest.Config) -> bool:
    """Whether the run's paths reach benchmarks taking odperf's case fixtures: the shipped suite (by path or
    --pyargs) or a team's own (odperf.plugin.discovery)."""
    return reaches_benchmarks(_arg_paths(config), config.getini("python_files"), config.getini("norecursedirs"))


def pytest_configure(config: pytest.Config) -> None:
    from odperf.measure.devices import load_table
    from odperf.suite.matrix import marker_catalogue
    from odperf.zoo.registry import all_models

    table = load_table()
    device_markers = [*table.cpu_markers, *(m for rule in table.rules for m in rule.markers)]
    _register_markers(config, marker_catalogue(all_models(), device_markers))
    _register_markers(config, {STREAM_MARKER: "streaming benchmarks: MLPerf LoadGen scenarios (benchmarks/test_stream.py)",
                               PIPELINE_MARKER: "pipeline benchmarks: cameras, a broker, detector instances"})
    if _is_xdist_worker(config) or not _collects_benchmarks(config):
        return
    state = _state(config)  # every input checked here, once, before any worker (or xdist process) starts
    _stream_plan(config)  # the stream options too: one line here, not a collection error per module
    _refuse_xdist_timing(config, state)
    if config.option.collectonly:
        return
    from odperf.plugin.session import MeasuringRun

    try:
        run = MeasuringRun(config, state)
        run.check_outputs()
        if config.getoption("benchmark_storage", None) == DEFAULT_STORAGE and any(
            config.getoption(o, None) for o in ("benchmark_save", "benchmark_autosave", "benchmark_compare")
        ):
            # pytest-benchmark names its storage folder after the OS and Python only; keep each hardware
            # profile's runs apart so that runs from two GPUs never mix (its own configure runs after this).
            config.option.benchmark_storage = f"{DEFAULT_STORAGE}/{state.profile_name}"
        run.check_storage()
        state.prepare()
    except OdperfError as exc:
        raise pytest.UsageError(f"odperf: {exc}") from None
    run.start()
    config.pluginmanager.register(run, "odperf-run")


def _stream_plan(config: pytest.Config):
    plan = config.stash.get(_STREAM_PLAN, None)
    if plan is None:
        from odperf.stream.options import plan_from_options

        try:
            plan = plan_from_options(config.getoption("odperf_stream_scenarios"),
                                     config.getoption("odperf_stream_budget"),
                                     config.getoption("odperf_stream_prefetch"),
                                     config.getoption("odperf_stream_logs"),
                                     json_target(config.getoption("benchmark_json", None)),
                                     config.getoption("odperf_seed"))
        except OdperfError as exc:
            raise pytest.UsageError(f"odperf: {exc}") from None
        config.stash[_STREAM_PLAN] = plan
    return plan


def _streams_asked(config: pytest.Config) -> bool:
    """Streams take minutes: they run when asked for (a file of stream benchmarks named, whatever its name,
    ``-m stream``, or a stream option given), not as a side effect of ``pytest benchmarks``."""
    named = names_stream_module(_arg_paths(config))
    marked = _selects_stream(config.option.markexpr)
    return named or marked or config.getoption("odperf_stream_scenarios") != "all"


@pytest.fixture(scope="session")
def odperf_stream_plan(pytestconfig: pytest.Config):
    """The streaming pass's scenarios, budget and log folder (odperf.stream.cases.StreamPlan)."""
    return _stream_plan(pytestconfig)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "odperf_stream_case" in metafunc.fixturenames:
        state = _state(metafunc.config, check=not _is_xdist_worker(metafunc.config))
        cases = state.cases() if _streams_asked(metafunc.config) else []
        metafunc.parametrize("odperf_stream_case", [
            pytest.param((case, scenario), id=f"{case.id}-{scenario}",
                         marks=[getattr(pytest.mark, STREAM_MARKER), *(getattr(pytest.mark, m) for m in case.markers)])
            for case in cases for scenario in _stream_plan(metafunc.config).scenarios
        ])
        return
    if "odperf_pipeline_case" in metafunc.fixturenames:  # only when asked: a pass takes minutes
        from odperf.plugin.discovery import PIPELINE_FIXTURE, uses_case_fixture

        asked = (any(p.is_file() and uses_case_fixture(p, frozenset({PIPELINE_FIXTURE})) for p in _arg_paths(metafunc.config))
                 or _selects_marker(metafunc.config.option.markexpr, PIPELINE_MARKER))
        state = _state(metafunc.config, check=not _is_xdist_worker(metafunc.config))
        metafunc.parametrize("odperf_pipeline_case", [
            pytest.param(case, id=case.id, marks=[getattr(pytest.mark, PIPELINE_MARKER),
                                                  *(getattr(pytest.mark, m) for m in case.markers)])
            for case in (state.cases() if asked else [])])
        return
    name = next((n for n in MEASURED_FIXTURES if n in metafunc.fixturenames), None)
    if name is None:
        return
    state = _state(metafunc.config, check=not _is_xdist_worker(metafunc.config))
    cases = state.cases() if name == "odperf_case" else state.accuracy_cases()
    params = [
        pytest.param(case, id=case.id if name == "odperf_case" else case.accuracy_id,
                     marks=[getattr(pytest.mark, m) for m in case.markers])
        for case in cases
    ]
    metafunc.parametrize(name, params)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    # Inside an xdist worker the timing benchmarks cannot save anything: fail each, saying why.
    workers = _xdist_workers(item.config)
    if workers and any(item.get_closest_marker(m) for m in (TIMING_MARKER, STREAM_MARKER, PIPELINE_MARKER)):
        pytest.fail(_XDIST_MESSAGE.format(n=workers), pytrace=False)
    result = yield
    case = _case_of(item)
    benchmark = getattr(item, "funcargs", {}).get("benchmark")
    if case is not None and benchmark is not None:
        # pytest-benchmark saves the parameters it was given: the case as plain values instead of an object
        # it cannot serialise, so that --benchmark-group-by=param:model and its compare work on odperf's files
        benchmark.params = case.params
    return result


def _case_of(item: pytest.Item) -> Any:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return next((params[n] for n in MEASURED_FIXTURES if n in params), None)


def _refuse_xdist_timing(config: pytest.Config, state: Any) -> None:
    """Refuse up front (before xdist starts its workers, which alone collect) a run under -n that reaches
    the suite and whose -m can select a timing benchmark; ``pytest_runtest_setup`` fails any that the
    workers still meet, by the same marker."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not _xdist_workers(config):
        return
    if _selects_timing(config.option.markexpr, state.cases(), _streams_asked(config)):
        raise pytest.UsageError(_XDIST_MESSAGE.format(n=_xdist_workers(config)))


def _selects_timing(markexpr: str | None, cases: list[Any], streams: bool = False) -> bool:
    """Whether ``-m markexpr`` selects any timing case, by pytest's own evaluation of the expression
    against the markers such a case carries: ``timing`` (or ``stream``, where ``streams`` were asked for) and
    the case's own (hardware, model)."""
    if not markexpr:
        return bool(cases)
    from _pytest.mark import MarkMatcher
    from _pytest.mark.expression import Expression

    try:
        expression = Expression.compile(markexpr)
    except SyntaxError:
        return False  # pytest itself reports the malformed expression
    return any(
        expression.evaluate(MarkMatcher.from_markers(getattr(pytest.mark, m).mark for m in (kind, *c.markers)))
        for c in cases for kind in ((TIMING_MARKER, STREAM_MARKER) if streams else (TIMING_MARKER,))
    )


def _selects_stream(markexpr: str | None) -> bool:
    """Whether ``-m markexpr`` asks for the streams: true for a stream case's markers, false without them."""
    return _selects_marker(markexpr, STREAM_MARKER)


def _selects_marker(markexpr: str | None, marker: str) -> bool:
    """Whether ``-m markexpr`` asks for ``marker``'s benchmarks: true with it, false without any marker."""
    if not markexpr:
        return False
    from _pytest.mark import MarkMatcher
    from _pytest.mark.expression import Expression

    try:
        expression = Expression.compile(markexpr)
    except SyntaxError:
        return False
    marks = lambda names: MarkMatcher.from_markers(getattr(pytest.mark, m).mark for m in names)  # noqa: E731
    return expression.evaluate(marks([marker])) and not expression.evaluate(marks([]))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(_STATE, None)
    return state.header_lines() if state else None


def pytest_report_collectionfinish(config: pytest.Config, start_path: Path, items: list[pytest.Item]):
    state = config.stash.get(_STATE, None)
    if state is None or items:
        return None
    how = " ".join(
        f"{flag} {value!r}" for flag, value in (("-k", config.option.keyword), ("-m", config.option.markexpr))
        if value
    )
    return state.nothing_selected_line(how)


@pytest.fixture(scope="session")
def odperf_suite(pytestconfig: pytest.Config):
    """The run's settings, expectations and recorder (odperf.suite.state.SuiteState)."""
    return _state(pytestconfig, check=not _is_xdist_worker(pytestconfig))


@pytest.hookimpl(wrapper=True)
def pytest_benchmark_compare_machine_info(config: pytest.Config, benchmarksession: Any, machine_info: dict[str, Any],
                                          compared_benchmark: dict[str, Any]) -> Any:
    """Comparing against another machine is what odperf's saved runs are for: one short line names both
    machines instead of pytest-benchmark's warning, which dumps both machine_info blocks (kB of text per
    compared file). Its check is shown the current machine for the saved one while it runs."""
    saved = compared_benchmark.get("machine_info") or {}
    compared_benchmark["machine_info"] = machine_info
    try:
        result = yield
    finally:
        compared_benchmark["machine_info"] = saved
    if saved != machine_info:
        benchmarksession.logger.warning(
            f"odperf: comparing {_machine(machine_info)} (this run) with {_machine(saved)} (saved)")
    return result


def _machine(info: dict[str, Any]) -> str:
    block = info.get("odperf") or {}
    devices = ", ".join(str(d.get("display_name") or d.get("name")) for d in block.get("devices", []))
    return f"{block.get('profile', 'unknown profile')} [{devices}] on {info.get('node') or 'unknown host'}"


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        machine_info["odperf"] = state.machine_info()


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict[str, Any]) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        output_json["odperf"] = state.json_block()
