#!/usr/bin/env bash
# odperf's entry point for people and CI. Each task first makes sure the virtual environment in .venv
# exists and matches pyproject.toml (idempotent: a second run installs nothing), then runs.
#
#   bash tasks.sh bench [pytest args...]   the main job: every embedded model x batch size on this machine
#   bash tasks.sh test  [pytest args...]   the library's tests, then the CI smoke run of the real suite
#   bash tasks.sh setup                    only create/refresh .venv
#   bash tasks.sh report                   re-render reports/main from the main job's saved JSON
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.odperf-installed"

setup() {
    local python="${PYTHON:-python3}"
    if [[ ! -x "$PY" ]]; then
        "$python" -m venv "$VENV" || { echo "odperf: could not create $VENV with $python -m venv (install python3-venv?)" >&2; exit 2; }
    fi
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
        "$PY" -m pip install --quiet --upgrade pip
        "$PY" -m pip install --quiet -e ".[torch]"   # both runtimes: TensorFlow and PyTorch
        echo "$want" >"$STAMP"
    fi
}

task=${1:-}
[[ $# -gt 0 ]] && shift
case "$task" in
    setup)
        setup
        ;;
    bench)
        setup
        exec "$PY" -m odperf.cli bench "$@"
        ;;
    test)
        setup
        # Functional tests spread over both cores; none of them is timed by pytest-benchmark.
        "$PY" -m pytest tests -n "${ODPERF_TEST_WORKERS:-2}" "$@"
        # The real suite on the embedded default, smoke-sized: one process, saved JSON, then gated on.
        "$PY" -m odperf.cli bench --smoke
        ;;
    report)
        setup
        exec "$PY" -m odperf.cli report .benchmarks/main.json .benchmarks/main-cpu_400mb.json --out reports/main "$@"
        ;;
    *)
        echo "usage: bash tasks.sh {bench|test|setup|report} [args...]" >&2
        exit 2
        ;;
esac
