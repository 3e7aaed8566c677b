"""odperf's benchmark suite, shipped as ``odperf.benchmarks``: ``pytest --pyargs odperf.benchmarks``."""
