"""Loads odperf's pytest plugin for every suite in this checkout (tests/ and benchmarks/)."""

pytest_plugins = ["odperf.pytest_plugin"]
