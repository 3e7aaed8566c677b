"""The package layout, which pyproject.toml cannot express: odperf's modules under src/, plus the benchmark
suite and the fixtures, which stay at the top of the repository and ship inside the package as
``odperf.benchmarks`` and ``odperf/fixtures`` (found through odperf.util.package_data); the fixtures' folders
(the embedded models' files) are data packages. Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, find_packages, setup

FIXTURES = ["odperf.fixtures", *(f"odperf.fixtures.{p}" for p in find_namespace_packages("fixtures"))]

setup(
    packages=[*find_packages("src"), "odperf.benchmarks", *FIXTURES],
    package_dir={"": "src", "odperf.benchmarks": "benchmarks", "odperf.fixtures": "fixtures"},
    package_data={"odperf": ["py.typed"], **{p: ["*"] for p in FIXTURES}},
)
