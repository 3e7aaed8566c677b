"""odperf's pytest plugin: glue between pytest/pytest-benchmark and the library (options, markers,
parametrisation, machine info). It computes nothing itself."""

from __future__ import annotations
