"""Loads odperf's pytest plugin for every suite in this checkout (tests/ and benchmarks/) also when odperf
runs from the source tree (PYTHONPATH=src) without being installed; installed, its pytest11 entry point
has the module's name, so the plugin is registered once."""

pytest_plugins = ["odperf.pytest_plugin"]
