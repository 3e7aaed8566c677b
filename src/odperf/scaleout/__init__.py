"""Scale-out: ``odperf bench --ray ADDRESS`` runs the benchmark matrix over a Ray cluster's GPUs and boards.

``plan`` splits the cases into shards, ``task`` runs a shard's pytest on its node, ``gather`` files the
shards' JSON per profile, ``progress`` says where the run stands, ``driver`` ties them together. Ray is an
extra (``odperf[ray]``), imported only when ``--ray`` is given.
"""

from __future__ import annotations

import argparse


def add_options(p: argparse.ArgumentParser) -> None:
    """``odperf bench``'s options for a cluster run."""
    g = p.add_argument_group("cluster (Ray)")
    g.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run on the Ray cluster at ADDRESS (host:port, or auto on one of its nodes); needs "
                        "pip install 'odperf[ray]'")
    g.add_argument("--profiles", default=None, metavar="P,...",
                   help="device profiles to run (default: every odperf:<profile> resource a node declares)")
    g.add_argument("--cpu-emulation", action="append", metavar="NAME:MB",
                   help="the memory size of an emulated CPU profile nodes declare (repeatable; default "
                        "cpu_400mb:400)")
    g.add_argument("--exclusive", action="store_true", help="one shard per node at a time")
    g.add_argument("--shard-by-case", action="store_true",
                   help="one shard per batch size (default: a model's batch sizes stay together on one card)")
    g.add_argument("--report-dir", default=None, metavar="DIR",
                   help="where the report and comparison of a cluster run go (default reports/NAME)")
    g.add_argument("--retries", type=int, default=2, help="Ray retries of a failed shard (default 2)")
