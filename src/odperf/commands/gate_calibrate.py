"""``odperf gate --calibrate N``: how often the gate on two saved runs cries wolf, and how often it catches
a real slowdown and a real memory growth.

The gate on two saved runs sees one process per side, so it must know how far one process's level moves
from the next (``odperf.report.gate_noise``). Each of the N rounds of the calibration saves three runs of the
selection, each a fresh pytest with ``--benchmark-json``, as a team's CI would: two of this checkout's
HEAD (``head-K-a``, ``head-K-b``: an A/A pair, every failure a false alarm) and one of HEAD with a planted
regression (``planted-K``, gated against ``head-K-a``): the worker spins ``--planted-delay`` x each
image's own time inside the timed region (``odperf.commands.ab.calibrate``'s slowdown) and, once warm, holds
``--planted-memory`` x the model's own memory more (its own peak RSS since the runtime loaded). The runs go
in the order a, planted, b, so drift over a round falls on both comparisons.

Every pair is gated with a noise measured on this machine without it (leave one out): the between-process
spread of the HEAD runs of the other rounds (``gate_noise.measure``), and, when ``--noise FILE`` is given,
with that too. The noise of all HEAD runs is written beside the report (``saved-runs-noise.json``): a
noise file for ``odperf gate --noise``. Runs already in ``--out`` are reused, so an interrupted calibration
resumes where it stopped. The rates and every verdict go to ``saved-runs.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from odperf.commands.ab.sides import git as _git
from odperf.commands.ab.calibrate import TIMED, WORKER
from odperf.errors import OdperfError, ResultsError
from odperf.report import gate as gt
from odperf.report import gate_noise as gn
from odperf.report.gate_noise import GateNoise
from odperf.report.rows import rows_of
from odperf.results import load_run
from odperf.suite.launch import Selection, SuiteRun, child_env, pytest_command

RUN_TIMEOUT_S = 1800
LOADED = "        t_loaded = time.monotonic()\n"  # the model is loaded: the runtime's memory was read before
READY = "        t_ready = time.monotonic()\n"  # warm-up done: the model's own peak is reached
RUNTIME = "        self.channel.send({\"event\": \"runtime\", \"t\": t_imported})"


@dataclass
class Round:
    """One round of the calibration: its three saved runs."""

    number: int
    head_a: Path
    head_b: Path
    planted: Path


@dataclass
class Verdict:
    """One gated pair under one noise: the kinds of its failures, its undecided lines, its summary."""

    failed: list[str] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)

    def state(self) -> str:
        return "FAIL" if self.failed else "undecided" if self.undecided else "pass"


def plant(text: str, delay: float, memory: float) -> str:
    """The worker's source with the planted slowdown and memory growth (refused when its anchors moved)."""
    for anchor in (TIMED, LOADED, READY, RUNTIME):
        if anchor not in text:
            raise OdperfError(f"{WORKER}: {anchor.strip()!r} is not there any more; update "
                              f"odperf.commands.gate_calibrate's anchors")
    rss = ("int(open('/proc/self/statm').read().split()[1]) * __import__('os').sysconf('SC_PAGE_SIZE')")
    spin = (f"            _end = time.perf_counter() + {delay} * (time.perf_counter() - t0)\n"
            f"            while time.perf_counter() < _end:\n                pass\n")
    text = text.replace(TIMED, spin + TIMED)
    text = text.replace(RUNTIME, f"        self._planted_rss0 = {rss}\n" + RUNTIME)
    hold = (f"        import numpy as _np, resource as _resource\n"
            f"        _own = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss * 1024 - self._planted_rss0\n"
            f"        self._planted = _np.ones(max(int({memory} * _own), 1), dtype=_np.uint8)  # pages touched\n")
    return text.replace(READY, READY + hold)


@contextmanager
def trees(here: Path, delay: float, memory: float) -> Iterator[tuple[Path, Path]]:
    """Two detached temporary trees of HEAD: as it is, and with the planted regression committed."""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="odperf-gate-cal-")))
        made = []
        for name in ("head", "planted"):
            tree = tmp / name
            _git(here, "worktree", "add", "--detach", str(tree), "HEAD")
            made.append(tree)
            stack.callback(_git, here, "worktree", "remove", "--force", str(tree))
        worker = made[1] / WORKER
        worker.write_text(plant(worker.read_text(encoding="utf-8"), delay, memory), encoding="utf-8")
        _git(made[1], "-c", "user.name=odperf calibration", "-c", "user.email=calibration@localhost", "commit",
             "-qam", f"planted: +{delay:.0%} time, +{memory:.0%} of the model's own memory")
        yield made[0], made[1]


def save_run(tree: Path, args: argparse.Namespace, json_path: Path) -> Path:
    """One pytest run of the selection in ``tree``, saved with --benchmark-json (reused when already there)."""
    if json_path.is_file():
        return json_path
    selection = Selection(args.models, args.devices, args.images, accuracy=args.accuracy,
                          pytest_args=tuple(args.pytest_args or ()))
    partial = json_path.with_suffix(".partial.json")
    cmd = pytest_command(SuiteRun(json_path.stem, args.batch_sizes), selection, partial, root=tree)
    env = child_env(source=tree)
    log = json_path.with_suffix(".log")
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S)
    if not partial.is_file():
        raise ResultsError(f"{json_path.stem}: pytest (exit {done.returncode}) wrote no JSON; its output is in {log}")
    partial.rename(json_path)  # only a whole run is ever reused
    return json_path


def measure(args: argparse.Namespace, out: Path) -> list[Round]:
    """The N rounds' saved runs in ``out/runs`` (those already there reused)."""
    here = Path(_git(Path.cwd(), "rev-parse", "--show-toplevel").strip())
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    done: list[Round] = []
    with trees(here, args.planted_delay, args.planted_memory) as (head, planted):
        for k in range(1, args.calibrate + 1):
            t0 = time.monotonic()
            a = save_run(head, args, runs / f"head-{k}-a.json")
            p = save_run(planted, args, runs / f"planted-{k}.json")
            b = save_run(head, args, runs / f"head-{k}-b.json")
            done.append(Round(k, a, b, p))
            print(f"odperf gate --calibrate: round {k}/{args.calibrate} saved ({time.monotonic() - t0:.0f} s)",
                  flush=True)
    return done


def noises(rounds: list[Round], k: int, given: GateNoise | None, source: str) -> dict[str, GateNoise]:
    """The noises round ``k`` is judged with: the HEAD runs of the other rounds (when there are enough), and
    the noise given (a file, or the shipped one)."""
    out: dict[str, GateNoise] = {}
    others = [load_run(p) for r in rounds if r.number != k for p in (r.head_a, r.head_b)]
    if len(others) >= gn.MIN_RUNS:
        out["measured here, leave one out"] = gn.measure(others, f"{source}, the other rounds' HEAD runs")
    if given is not None:
        out[f"given ({given.source})"] = given
    return out


def judge_rounds(rounds: list[Round], args: argparse.Namespace, given: GateNoise | None) -> list[Judgement]:
    """Every round's A/A and planted pairs gated under each noise."""
    source = f"odperf gate --calibrate {args.calibrate}"
    out: list[Judgement] = []
    for r in rounds:
        for name, noise in noises(rounds, r.number, given, source).items():
            for kind, current in (("A/A", r.head_b), ("planted", r.planted)):
                config = gt.GateConfig(time_threshold=args.time_threshold, memory_threshold=args.memory_threshold,
                                       noise=noise, noise_alpha=args.noise_alpha, detect=args.detect, strict=True)
                result = gt.run_gate(load_run(r.head_a), load_run(current), config)
                out.append(Judgement(kind, r.number, name, result.failures, result.undecided, result.times))
    return out


@dataclass
class Judgement:
    """One pair gated under one noise."""

    kind: str  # "A/A" or "planted"
    number: int
    noise: str
    failures: list
    undecided: list[str]
    lines: list[str]

    def kinds(self, what: str) -> str:
        """'FAIL', 'undecided' or 'pass' for one kind of figure (time, memory, or the others: map, outcome...)."""
        others = what == "other"
        if any((f.kind not in ("time", "memory")) if others else f.kind == what for f in self.failures):
            return "FAIL"
        if not others and any(u.startswith(f"UNDECIDED {what}") for u in self.undecided):
            return "undecided"
        return "pass"


def report(judged: list[Judgement], args: argparse.Namespace, minutes: float, rounds: int, load: str,
           conditions: list[str]) -> str:
    span_text = conditions[2] if len(conditions) > 2 else "no runs"
    """The rates per noise and kind of figure, then every verdict whole."""
    names = list(dict.fromkeys(j.noise for j in judged))
    lines = [f"# odperf gate on two saved runs: calibration, {rounds} A/A pairs and {rounds} planted "
             f"(+{args.planted_delay:.0%} time, +{args.planted_memory:.0%} of the model's own memory)", "",
             f"Selection: models {args.models}, batch sizes {args.batch_sizes}, {args.images} images per case, "
             f"devices {args.devices}; one pytest process per saved run (--benchmark-json), as CI saves them; "
             f"time threshold +{args.time_threshold:.0%}, memory threshold +{args.memory_threshold:.0%}, "
             f"noise alpha {args.noise_alpha:g} per gate, a pass rules out +{args.detect:.0%} (95% bound); "
             f"{minutes:.1f} min of measuring in this invocation, {span_text}.",
             "", f"Machine load while measuring: {load}; {conditions[0]}.", "",
             f"Planted against HEAD, as measured (median over rounds): {conditions[1]}.", "",
             "Reproduce: `odperf gate --calibrate N " + " ".join(
                 f"--{k.replace('_', '-')} {getattr(args, k)}" for k in ("models", "batch_sizes", "images"))
             + (" --accuracy" if args.accuracy else "") + "` (runs already in --out are reused)",
             "", "| noise | A/A: time FAIL / undecided | A/A: memory FAIL / undecided | A/A: mAP, outcome FAIL "
             "| planted: time caught / undecided / passed | planted: memory caught / undecided / passed |",
             "|---|---|---|---|---|---|"]
    for name in names:
        aa = [j for j in judged if j.noise == name and j.kind == "A/A"]
        pl = [j for j in judged if j.noise == name and j.kind == "planted"]

        def count(js: list[Judgement], what: str, state: str) -> int:
            return sum(j.kinds(what) == state for j in js)

        lines.append(f"| {name} | {count(aa, 'time', 'FAIL')} / {count(aa, 'time', 'undecided')} of {len(aa)} "
                     f"| {count(aa, 'memory', 'FAIL')} / {count(aa, 'memory', 'undecided')} of {len(aa)} "
                     f"| {count(aa, 'other', 'FAIL')} of {len(aa)} "
                     f"| {count(pl, 'time', 'FAIL')} / {count(pl, 'time', 'undecided')} / {count(pl, 'time', 'pass')} "
                     f"of {len(pl)} | {count(pl, 'memory', 'FAIL')} / {count(pl, 'memory', 'undecided')} / "
                     f"{count(pl, 'memory', 'pass')} of {len(pl)} |")
    lines += ["", "Every verdict (baseline: the round's first HEAD run; A/A: its second; planted: the planted run):"]
    for j in judged:
        lines += ["", f"## {j.kind} {j.number}, noise {j.noise}: time {j.kinds('time')}, memory "
                      f"{j.kinds('memory')}, mAP/outcome {j.kinds('other')}", ""]
        others = [str(f) for f in j.failures if f.kind not in ("time", "memory")]  # mAP, outcome, missing
        lines += [f"- {x}" for x in [*others, *j.lines]]  # each time and memory line ends with its verdict
    return "\n".join(lines) + "\n"


def span(rounds: list[Round]) -> str:
    """When the saved runs were written (pytest-benchmark's datetime of each): the calibration resumes, so
    one invocation's clock does not say how long the measuring took."""
    stamps = sorted(json.loads(p.read_text())["datetime"] for r in rounds for p in (r.head_a, r.head_b, r.planted))
    return f"saved runs written from {stamps[0][:16]} to {stamps[-1][:16]} UTC"


def shared(rounds: list[Round]) -> str:
    """How many saved runs measured while another odperf run measured on the same device (the suite marks
    such records ``device_shared_with``): the calibration says in what conditions its rates were taken."""
    runs = [p for r in rounds for p in (r.head_a, r.head_b, r.planted)]
    hit = 0
    for path in runs:
        records = json.loads(path.read_text())["odperf"]["records"]
        hit += any(rec.get("device_shared_with") for rec in records)
    return f"{hit} of {len(runs)} saved runs measured while another odperf run measured on the same cpu"


def planted_growth(rounds: list[Round]) -> str:
    """The planted run against its round's first HEAD run, per case: the median (over rounds) of the time and
    of the model's own memory ratios; what the planting did, as measured."""
    ratios: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in rounds:
        base = {(x.model, x.batch_size): x for x in rows_of(load_run(r.head_a)) if x.ok}
        for x in rows_of(load_run(r.planted)):
            b = base.get((x.model, x.batch_size))
            if x.ok and b and b.median_s and b.model_mb and x.median_s and x.model_mb:
                ratios.setdefault((x.model, x.batch_size), []).append((x.median_s / b.median_s, x.model_mb / b.model_mb))
    return "; ".join(f"{m} b{b}: time x{np.median([t for t, _ in v]):.2f}, own memory x{np.median([m_ for _, m_ in v]):.2f}"
                     for (m, b), v in sorted(ratios.items()))


def machine_load() -> str:
    """The load averages and cores now: the calibration states the conditions it ran in."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min) on {os.cpu_count()} cores"


def calibrate(args: argparse.Namespace) -> int:
    if args.calibrate < 1:
        raise OdperfError(f"--calibrate needs at least 1 round, got {args.calibrate}")
    if args.baseline or args.current:
        raise OdperfError("--calibrate saves its own runs (HEAD, HEAD and HEAD with a planted regression): "
                          "leave out --baseline/--current")
    out = Path(args.out).resolve()
    given = gn.load(args.noise) if args.noise else None
    loads = [machine_load()]
    t0 = time.monotonic()
    rounds = measure(args, out)
    loads.append(machine_load())
    minutes = (time.monotonic() - t0) / 60
    heads = [load_run(p) for r in rounds for p in (r.head_a, r.head_b)]
    if len(heads) >= gn.MIN_RUNS:
        noise = gn.measure(heads, f"odperf gate --calibrate {args.calibrate} --models {args.models} --batch-sizes "
                                  f"{args.batch_sizes} --images {args.images}: {len(heads)} HEAD runs; {shared(rounds)}; "
                                  f"{span(rounds)}")
        (out / "saved-runs-noise.json").write_text(json.dumps(noise.to_json(), indent=2) + "\n", encoding="utf-8")
    judged = judge_rounds(rounds, args, given)
    load = ("; ".join(dict.fromkeys(loads)) + " (start; end)" if minutes >= 0.5 else
            f"not sampled: every run was reused (the load when judged: {loads[0]})")
    text = report(judged, args, minutes, len(rounds), load,
                  [shared(rounds), planted_growth(rounds), span(rounds)])
    (out / "saved-runs.md").write_text(text, encoding="utf-8")
    print(text.split("\n\nEvery verdict")[0])
    print(f"odperf gate --calibrate: every verdict in {out / 'saved-runs.md'}")
    return 0
