"""``odperf bench --ray``: shards planned per profile, and real runs on a local two-node Ray cluster.

The cluster tests start Ray nodes on this machine (ray.cluster_utils.Cluster), each declaring odperf
profiles as custom resources, and run the real command in a subprocess: the embedded centernet_tiny at
one camera image per case, real pytest and pytest-benchmark on each node, the real report and compare.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from odperf.results import load_run
from odperf.scaleout.gather import SHARD_KEY, ProfileRun, others_on_node, write
from odperf.scaleout.shards import (ModelEntry, ClusterProfile, declared_profiles, make_shards, ray_options,
                                  resolve_profile)
from odperf.scaleout.task import ShardResult

ROOT = Path(__file__).resolve().parents[1]
CPU_400MB = {"cpu_400mb": "cpu_400mb:400"}


# --- planning (no Ray) ------------------------------------------------------------------------------
def test_profiles_resolve_to_what_their_shards_need():
    assert resolve_profile("cpu", CPU_400MB) == ClusterProfile("cpu", "cpu")
    assert resolve_profile("cpu_400mb", CPU_400MB) == ClusterProfile("cpu_400mb", "cpu", emulate="cpu_400mb:400")
    assert resolve_profile("v100_sxm2", {}) == ClusterProfile("v100_sxm2", "gpu", gpu=True)
    assert resolve_profile("p100_on_h100", {}) == ClusterProfile("p100_on_h100", "gpu", emulate="p100", gpu=True)
    assert resolve_profile("tx2", {}).gpu is False  # a Jetson board: Ray counts no GPU there
    assert declared_profiles({"CPU": 4, "odperf:v100_sxm2": 2, "odperf:cpu": 1, "GPU": 2}) == ["cpu", "v100_sxm2"]


def test_a_models_batch_sizes_stay_on_one_shard_unless_split_by_case():
    profiles = [resolve_profile("cpu", {}), resolve_profile("v100_sxm2", {})]
    models = [ModelEntry("a", "a"), ModelEntry("b", "b")]
    shards = make_shards(profiles, models, (1, 8, 64))
    assert [(s.model.name, s.profile.name, s.batch_sizes) for s in shards] == [
        ("a", "cpu", (1, 8, 64)), ("a", "v100_sxm2", (1, 8, 64)),
        ("b", "cpu", (1, 8, 64)), ("b", "v100_sxm2", (1, 8, 64))]
    split = make_shards(profiles[:1], models[:1], (1, 8), by_case=True)
    assert [s.case_ids() for s in split] == [["a-b1-cpu"], ["a-b8-cpu"]]
    gpu, cpu = ray_options(shards[1], 2), ray_options(shards[0], 2)
    assert (gpu["num_gpus"], gpu["resources"]) == (1, {"odperf:v100_sxm2": 1})
    assert (cpu["num_gpus"], cpu["resources"]) == (0, {"odperf:cpu": 1})


def test_sharing_counts_only_overlapping_shards_of_the_same_node():
    def result(i, node, start, end):
        return ShardResult(i, node, "h", "m", start, end, 0, None)

    a, b, c, d = result(1, "n1", 0, 10), result(2, "n1", 5, 20), result(3, "n1", 10, 30), result(4, "n2", 0, 30)
    every = [a, b, c, d]
    assert [others_on_node(r, every) for r in every] == [1, 2, 1, 0]


def test_a_shard_that_failed_for_good_is_filed_as_crash_records_with_its_reason(tmp_path):
    profile = resolve_profile("cpu", {})
    failed, skipped = make_shards([profile], [ModelEntry("a", "a", "tensorflow"), ModelEntry("b", "b")], (1, 8))
    run = ProfileRun("cpu", returned=[(skipped, ShardResult(2, "n1", "h", "node-id", 0, 1, 0, None,
                                                         {"b-b1-cpu": "skipped"}))],
                     failed=[(failed, "NodeDiedError after 2 retries: its node was lost")])
    path = write(run, [], tmp_path, "main", "driver-id")
    assert path == tmp_path / "cpu" / "node-id" / "0001_main.json"  # where that node's own run would save
    saved_run = load_run(path)
    assert [(r.model, r.batch_size, r.outcome, r.backend) for r in saved_run.records] == [
        ("a", 1, "crash", "tensorflow"), ("a", 8, "crash", "tensorflow")]
    assert all("its node was lost" in r.error for r in saved_run.records)
    again = write(ProfileRun("cpu", returned=run.returned, failed=run.failed), [], tmp_path, "main", "driver-id")
    assert again.name == "0002_main.json"  # numbered after the runs already saved, as pytest-benchmark numbers


def test_without_ray_the_command_says_how_to_install_it():
    code = ("import sys; sys.modules['ray'] = None; from odperf.cli import main; "
            "sys.exit(main(['bench', '--ray', 'auto', '--models', 'centernet_tiny']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
    assert proc.returncode == 2
    assert "pip install 'odperf[ray]'" in proc.stderr


# --- a real local cluster ---------------------------------------------------------------------------
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the ray extra is not installed")


class Driver:
    """``odperf bench --ray`` in a subprocess, its output read line by line as it comes."""

    def __init__(self, address: str, tmp: Path, *extra: str, batch_sizes: str = "1,8") -> None:
        (tmp / "rules.toml").write_text("# no deadlines: a loaded 2-core machine times two shards at once\n")
        cmd = [sys.executable, "-m", "odperf.cli", "bench", "--ray", address, "--models", "centernet_tiny",
               "--batch-sizes", batch_sizes, "--images", "1", "--no-accuracy", "--name", "cluster",
               "--out-dir", str(tmp / "bench"), "--report-dir", str(tmp / "report"), *extra,
               "--", f"--odperf-expectations={tmp / 'rules.toml'}"]
        self.lines: list[str] = []
        self.seen_at: list[float] = []  # when each line came (time.time())
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.seen_at.append(time.time())
            self.lines.append(line.rstrip())

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 240) -> list[re.Match]:
        """The first ``count`` lines matching ``pattern``, once they have come."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in (re.search(pattern, line) for line in list(self.lines)) if m]
            if len(found) >= count:
                return found[:count]
            assert self.proc.poll() is None, "\n".join(self.lines)
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 240) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        print("\n".join(self.lines))
        return code


def start_cluster(*nodes: dict):
    """A head (the driver's node, no odperf profile) and ``nodes`` (add_node arguments)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for node in nodes:
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    return cluster


def saved(tmp: Path, profile: str) -> dict:
    files = sorted((tmp / "bench" / profile).glob("*/0001_cluster.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


@needs_ray
def test_an_address_where_no_cluster_listens_is_one_line_before_ray_tries(tmp_path):
    """`--ray 127.0.0.1:1`: refused by a TCP connect before ray.init, whose own retries last minutes."""
    done = subprocess.run([sys.executable, "-m", "odperf.cli", "bench", "--ray", "127.0.0.1:1", "--models",
                           "centernet_tiny", "--out-dir", str(tmp_path / "bench")], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "odperf bench: error: --ray 127.0.0.1:1: no Ray cluster answers there (Connection refused); start one "
        "(ray start --head) and give its address (host:6379), or 'auto' on one of its nodes"]
    assert not (tmp_path / "bench").exists()


@needs_ray
def test_two_nodes_of_two_profiles_give_a_run_each_and_a_comparison(tmp_path):
    cluster = start_cluster({"num_cpus": 1, "resources": {"odperf:cpu": 1}},
                            {"num_cpus": 1, "resources": {"odperf:cpu_400mb": 1}})
    try:
        driver = Driver(cluster.address, tmp_path, batch_sizes="8")
        code = driver.finish()
    finally:
        cluster.shutdown()
    assert code == 0
    shards = {}
    for profile in ("cpu", "cpu_400mb"):
        run = load_run(next((tmp_path / "bench" / profile).glob("*/0001_cluster.json")))
        assert run.profile == profile
        assert [(r.batch_size, r.outcome) for r in run.records] == [(8, "ok")]
        doc = saved(tmp_path, profile)
        assert all(r[SHARD_KEY]["other_shards_on_node"] == 0 for r in doc["odperf"]["records"])
        (shards[profile],) = doc["odperf"]["ray_shards"]
    cpu, small = shards["cpu"], shards["cpu_400mb"]
    assert cpu["node"] != small["node"]  # each profile ran on the node that declares it ...
    assert cpu["start"] < small["end"] and small["start"] < cpu["end"]  # ... both at once
    compare = (tmp_path / "report" / "compare.md").read_text()
    assert "cpu_400mb" in compare and "centernet_tiny" in compare
    assert (tmp_path / "report" / "index.md").is_file()
    wall = float(re.search(r"took ([\d.]+) s of wall time", "\n".join(driver.lines)).group(1))
    print(f"two-node run: wall {wall:.1f} s, shards' own times {cpu['seconds'] + small['seconds']:.1f} s")


@needs_ray
def test_a_node_lost_mid_run_loses_no_case(tmp_path):
    small, big = ({"num_cpus": n, "resources": {"odperf:cpu": n}} for n in (1, 2))
    cluster = start_cluster(small, big)
    try:
        driver = Driver(cluster.address, tmp_path, "--shard-by-case")
        running = {m.group(1) for m in driver.wait_for(r"node [^/]+/(\w{8}), 0/1 cases, now ", count=2)}
        # Lose a node while the other has a free slot: the small one if it runs a shard, else the big one.
        small_node, big_node = cluster.worker_nodes
        victim = small_node if small_node.node_id[:8] in running else big_node
        cluster.remove_node(victim)
        lost_at = time.time()
        code = driver.finish()
    finally:
        cluster.shutdown()
    doc = saved(tmp_path, "cpu")
    records = {r["batch_size"]: r for r in doc["odperf"]["records"]}
    # The victim was running a shard (seen above) that could not have finished: its pytest had just started.
    # Ray must have retried it on the node left: both cases measured, none filed as a crash.
    assert sorted(records) == [1, 8] and all(r["outcome"] == "ok" for r in records.values()), records
    returned = [s for s in doc["odperf"]["ray_shards"] if "start" in s]
    assert len(returned) == 2 and not [s for s in doc["odperf"]["ray_shards"] if "failed" in s]
    assert all(s["node"] != victim.node_id for s in returned)  # what came back ran on the surviving node
    retried = [s for s in returned if s["start"] > lost_at]
    assert retried, returned  # a shard (re)started after the node was lost: Ray's retry, observed
    assert code == 0
    told = next((t for t, line in zip(driver.seen_at, driver.lines) if "will be retried" in line), None)
    for s in retried:
        print(f"node lost -> shard {s['label']} restarted on another node after {s['start'] - lost_at:.1f} s"
              + (f" (Ray reported the loss to the driver after {told - lost_at:.1f} s)" if told else ""))


@needs_ray
def test_exclusive_runs_one_shard_per_node_and_ctrl_c_keeps_what_came_back(tmp_path):
    # One node with room for both profiles' shards at once: --exclusive must run them one after the other.
    cluster = start_cluster({"num_cpus": 2, "resources": {"odperf:cpu": 1, "odperf:cpu_400mb": 1}})
    try:
        driver = Driver(cluster.address, tmp_path, "--exclusive", batch_sizes="8")
        driver.wait_for(r"#1 .*: back from node")
        driver.proc.send_signal(signal.SIGINT)
        code = driver.finish()
    finally:
        cluster.shutdown()
    back = next(i for i, line in enumerate(driver.lines) if "#1 " in line and "back from node" in line)
    assert not any("#2 " in line and " cases" in line for line in driver.lines[:back])  # not started meanwhile
    assert code == 130
    assert any("1 shard(s) cancelled" in line for line in driver.lines)
    doc = saved(tmp_path, "cpu")  # the shard that came back before Ctrl-C is kept whole
    assert [(r["outcome"], r[SHARD_KEY]["other_shards_on_node"]) for r in doc["odperf"]["records"]] == [("ok", 0)]
    assert not (tmp_path / "bench" / "cpu_400mb").exists()
