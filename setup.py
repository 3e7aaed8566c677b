"""The package layout, which pyproject.toml cannot express: odperf's modules under src/, plus the benchmark
suite and the fixtures, which stay at the top of the repository and ship inside the package as
``odperf.benchmarks`` and ``odperf/fixtures`` (found through odperf.package_data). Everything else is in
pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "odperf.benchmarks", "odperf.fixtures"],
    package_dir={"": "src", "odperf.benchmarks": "benchmarks", "odperf.fixtures": "fixtures"},
    package_data={"odperf": ["py.typed"], "odperf.fixtures": ["*.toml", "models/**/*"]},
)
