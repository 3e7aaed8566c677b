"""``odperf bench --ray ADDRESS``: the benchmark matrix spread over a Ray cluster, gathered per profile.

The driver splits the selected cases into shards (odperf.scaleout.shards), hands each to Ray as a task that
needs one slot of its profile's resource (and one GPU for a GPU profile), writes each profile's returned
shards where a local run of that profile saves (odperf.scaleout.gather), and at the end renders
``odperf report`` over every profile and the ``odperf compare`` tables of each profile against the first.

Ray places the tasks. ``--exclusive`` keeps one shard per node at a time: the driver hands each task to an
idle node that declares its profile (soft node affinity: a retry after the node is lost goes elsewhere).
A shard whose task fails for good, or whose profile no live node declares any more, becomes crash records
with the reason. Ctrl-C cancels the outstanding tasks; every profile file already written stays.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path
from typing import Any

from odperf.errors import OdperfError
from odperf.suite.launch import EMULATED, MAIN_IMAGES
from odperf.scaleout.gather import ProfileRun, write
from odperf.scaleout.shards import (ClusterProfile, Shard, ShardOptions, declared_profiles, emulation_names, make_shards,
                                  ray_options, resolve_profile, select_models)
from odperf.scaleout.board import PREFIX, Board, Summary, shard_line
from odperf.scaleout.task import ShardResult, run_shard

POLL_S = 1.0
LIVENESS_EVERY_S = 5.0  # how often the driver checks that every in-flight shard's profile still has a node


def import_ray() -> Any:
    """Ray, or the one-line fix: a single machine never needs it, so it is imported here only."""
    try:
        import ray  # noqa: PLC0415
    except ImportError:
        raise OdperfError("--ray needs Ray, which is not installed: pip install 'odperf[ray]' on this machine "
                          "and on every node of the cluster") from None
    return ray


CONNECT_TIMEOUT_S = 5.0  # a head node answers a TCP connect at once; Ray itself retries for minutes


def reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why nothing answers at ``address`` (``host:port`` or ``ray://host:port``), or None when something does
    or the address is not one to try (``auto``, ``local``): checked before Ray, whose own connect retries
    for minutes printing only its retries."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


def connect(ray: Any, address: str) -> None:
    why = reachable(address)
    if why is not None:
        raise OdperfError(f"--ray {address}: no Ray cluster answers there ({why}); start one (ray start --head) "
                          "and give its address (host:6379), or 'auto' on one of its nodes")
    try:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise OdperfError(f"--ray {address}: cannot join a Ray cluster there ({str(exc).splitlines()[0]}); start "
                          "one (ray start --head) and give its address, or 'auto' on one of its nodes") from None


def profiles_to_run(ray: Any, args: argparse.Namespace) -> list[ClusterProfile]:
    """The profiles asked for (default: every one a node declares), each checked against the cluster."""
    declared = declared_profiles(ray.cluster_resources())
    how = "start its nodes with ray start --resources '{\"odperf:<profile>\": N}' (odperf device names a node's profile)"
    if not declared:
        raise OdperfError(f"--ray {args.ray}: no node of the cluster declares an odperf profile; {how}")
    emulations = emulation_names(args.cpu_emulation or [EMULATED])
    wanted = [p.strip() for p in args.profiles.split(",") if p.strip()] if args.profiles else declared
    missing = [p for p in wanted if p not in declared]
    if missing:
        raise OdperfError(f"--profiles: no node declares {', '.join(missing)} (declared: {', '.join(declared)}); {how}")
    profiles = [resolve_profile(p, emulations) for p in wanted]
    return [p for p in profiles if args.emulate or not p.emulate or args.profiles]


class ClusterRun:
    """One cluster run's state: shards waiting, in flight, returned or failed, and their profile files."""

    def __init__(self, ray: Any, args: argparse.Namespace, shards: list[Shard], options: ShardOptions) -> None:
        from pytest_benchmark.utils import get_machine_id
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray, self.args, self.options = ray, args, options
        self.affinity = NodeAffinitySchedulingStrategy
        self.out_dir = Path(args.out_dir or ".benchmarks")
        self.machine_id = get_machine_id()
        self.waiting = list(shards)
        self.in_flight: dict[Any, tuple[Shard, str | None]] = {}  # ref -> (shard, node it was handed to)
        self.runs = {s.profile.name: ProfileRun(s.profile.name) for s in shards}
        self.results: list[ShardResult] = []
        self.start = time.monotonic()
        self.profile_wall: dict[str, float] = {}
        here = ray.get_runtime_context().get_node_id()
        self.board = ray.remote(Board).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()
        self.task = ray.remote(run_shard)
        self.shown: dict[int, Any] = {}
        self.checked = time.monotonic()

    # --- handing shards to Ray ----------------------------------------------------------------------
    def submit(self) -> None:
        if not self.args.exclusive:
            for shard in self.waiting:
                self._submit(shard, None)
            self.waiting = []
            return
        busy = {node for _, node in self.in_flight.values()}
        for node in self._nodes():
            if node["NodeID"] in busy:
                continue
            shard = next((s for s in self.waiting if _fits(s.profile, node["Resources"])), None)
            if shard is not None:
                self.waiting.remove(shard)
                self._submit(shard, node["NodeID"])
                busy.add(node["NodeID"])

    def _submit(self, shard: Shard, node: str | None) -> None:
        opts = ray_options(shard, self.args.retries)
        if node is not None:
            opts["scheduling_strategy"] = self.affinity(node, soft=True)
        ref = self.task.options(**opts).remote(shard, self.options, self.board)
        self.in_flight[ref] = (shard, node)

    def _nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.ray.nodes() if n.get("Alive")]

    # --- what comes back ----------------------------------------------------------------------------
    def collect(self) -> None:
        done = []
        if self.in_flight:
            done, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=POLL_S)
        else:  # --exclusive, every waiting shard's node busy or gone
            time.sleep(POLL_S)
        for ref in done:
            shard, _ = self.in_flight.pop(ref)
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                self._fail(shard, _reason(exc, self.args.retries))
                continue
            self.results.append(result)
            self.profile_wall[shard.profile.name] = time.monotonic() - self.start
            print(f"{PREFIX}: {shard.label}: back from node {result.host}/{result.node_id[:8]} after "
                  f"{result.seconds:.1f} s (pytest exit code {result.returncode})", flush=True)
            measured_as = _profile_of(result)
            if measured_as not in (None, shard.profile.name):
                self._fail(shard, f"node {result.host} declares odperf:{shard.profile.name} but measures as "
                                  f"{measured_as}; fix its ray start --resources")
                continue
            run = self.runs[shard.profile.name]
            run.returned.append((shard, result))
            self._save(run)
        if time.monotonic() - self.checked > LIVENESS_EVERY_S:
            self.checked = time.monotonic()
            self._drop_orphans()

    def _drop_orphans(self) -> None:
        """Shards whose profile no live node declares any more (its only node was lost) would wait forever."""
        declared = set(declared_profiles(self.ray.cluster_resources()))
        for ref, (shard, _) in list(self.in_flight.items()):
            if shard.profile.name not in declared:
                self.ray.cancel(ref, force=True)
                del self.in_flight[ref]
                self._fail(shard, f"no live node declares odperf:{shard.profile.name} any more (its node was lost)")
        for shard in [s for s in self.waiting if s.profile.name not in declared]:
            self.waiting.remove(shard)
            self._fail(shard, f"no live node declares odperf:{shard.profile.name} any more")

    def _fail(self, shard: Shard, reason: str) -> None:
        print(f"{PREFIX}: {shard.label}: FAILED: {reason}", file=sys.stderr, flush=True)
        run = self.runs[shard.profile.name]
        run.failed.append((shard, reason))
        self.profile_wall[run.profile] = time.monotonic() - self.start
        self._save(run)

    def save_all(self) -> None:
        """Every profile with something back, written again (a stop may have come between a return and its write)."""
        for run in self.runs.values():
            if run.returned or run.failed:
                self._save(run)

    def _save(self, run: ProfileRun) -> None:
        """The profile's file, once it has a record to hold (a shard whose every case was skipped has none)."""
        if run.failed or any(r.json_text for _, r in run.returned):
            write(run, self.results, self.out_dir, self.args.name, self.machine_id)

    # --- saying where it stands ---------------------------------------------------------------------
    def show(self) -> None:
        try:
            snap = self.ray.get(self.board.snapshot.remote(), timeout=10)
        except self.ray.exceptions.RayError:
            return  # the board is a nicety; results never depend on it
        by_index = {s.index: s for s, _ in self.in_flight.values()}
        all_durations = [d for st in snap["states"].values() for d in st["durations"]]
        for index, state in snap["states"].items():
            key = (state["done"], state["current"], state["started"])
            if index in by_index and self.shown.get(index) != key:
                self.shown[index] = key
                attempts = len(snap["attempts"].get(index, []))
                print(shard_line(by_index[index], state, attempts, all_durations), flush=True)

    def summary(self, cancelled: list[Shard]) -> Summary:
        return Summary(time.monotonic() - self.start, list(self.runs.values()), self.profile_wall, cancelled)


def run_cluster(args: argparse.Namespace) -> int:
    """Run the selection on the cluster at ``args.ray``; the exit code is the worst of the shards' and report's."""
    from odperf.suite.matrix import parse_batch_sizes

    if args.smoke:
        raise OdperfError("--ray runs the benchmark matrix; --smoke is the local check: give one of them")
    ray = import_ray()
    models = select_models(args.models)
    sizes = parse_batch_sizes(args.batch_sizes)
    options = ShardOptions(images=args.images or MAIN_IMAGES, accuracy=args.accuracy,
                           pytest_args=[a for a in args.pytest_args if a != "--"], scorer=args.scorer)
    connect(ray, args.ray)
    try:
        shards = make_shards(profiles_to_run(ray, args), models, sizes, by_case=args.shard_by_case)
        print(f"{PREFIX}: {len(shards)} shard(s) of {len(models)} model(s) x {len(sizes)} batch size(s) on "
              f"{', '.join(dict.fromkeys(s.profile.name for s in shards))}", flush=True)
        cluster = ClusterRun(ray, args, shards, options)
        cancelled: list[Shard] = []
        try:
            while cluster.waiting or cluster.in_flight:
                cluster.submit()
                cluster.collect()
                cluster.show()
        except KeyboardInterrupt:
            cancelled = [s for s, _ in cluster.in_flight.values()] + cluster.waiting
            for ref in cluster.in_flight:
                ray.cancel(ref, force=True)
            cluster.save_all()
            print(f"{PREFIX}: interrupted: {len(cancelled)} shard(s) cancelled; every result that came back "
                  "is saved", file=sys.stderr, flush=True)
        summary = cluster.summary(cancelled)
    finally:
        ray.shutdown()
    for line in summary.lines():
        print(line, flush=True)
    if cancelled:
        return 130
    return max(_exit_code(summary), _render(args, [r.path for r in summary.runs if r.path]))


def _exit_code(summary: Summary) -> int:
    failed = any(run.failed for run in summary.runs)
    tests_failed = any(r.returncode not in (0, 5) for run in summary.runs for _, r in run.returned)
    return 1 if failed or tests_failed else 0


def _render(args: argparse.Namespace, paths: list[Path]) -> int:
    """``odperf report`` over every profile's file and ``odperf compare`` of each against the first."""
    if not args.report or not paths:
        return 0
    from odperf.report.render import compare_files, report_runs

    out = Path(args.report_dir) if args.report_dir else Path("reports") / args.name
    code = report_runs(list(map(str, paths)), out)
    if len(paths) > 1:
        code = max(code, compare_files(list(map(str, paths)), markdown=out / "compare.md"))
    return code


def _fits(profile: ClusterProfile, resources: dict[str, float]) -> bool:
    return resources.get(profile.resource, 0) >= 1 and (not profile.gpu or resources.get("GPU", 0) >= 1)


def _profile_of(result: ShardResult) -> str | None:
    import json

    return json.loads(result.json_text or "{}").get("odperf", {}).get("profile")


def _reason(exc: Exception, retries: int) -> str:
    cause = getattr(exc, "cause", None)
    text = str(cause) if cause is not None else str(exc)
    return f"{type(cause or exc).__name__} after {retries} retr{'y' if retries == 1 else 'ies'}: {text.strip()[:2000]}"
