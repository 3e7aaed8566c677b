#!/usr/bin/env bash
# odperf's entry point for people and CI. Each task first makes sure the virtual environment in .venv
# exists and matches pyproject.toml (idempotent: a second run installs nothing), then runs.
#
#   bash tasks.sh bench [pytest args...]   the main job: every embedded model x batch size on this machine
#   bash tasks.sh test  [pytest args...]   the library's tests, then the CI smoke run of the real suite
#   bash tasks.sh setup                    only create/refresh .venv
#   bash tasks.sh report                   re-render reports/main from the main job's saved JSON
#   bash tasks.sh gpu-wheels               download the small wheels a GPU image lacks into .gpu-wheels/
#   bash tasks.sh gpu-check [args...]      on a GPU machine with PyTorch (no venv, no TensorFlow): the GPU check
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
        # The real suite on the embedded default, smoke-sized: one process, saved JSON read back and checked.
        "$PY" -m odperf.cli bench --smoke
        ;;
    report)
        setup
        runs=(.benchmarks/main.json .benchmarks/main-cpu_400mb.json)
        [[ -f .benchmarks/main-stream.json ]] && runs+=(.benchmarks/main-stream.json)   # the streaming pass
        exec "$PY" -m odperf.cli report "${runs[@]}" --out reports/main "$@"
        ;;
    gpu-wheels)
        # For a GPU image with its own Python 3.12 and torch but without pycocotools: carry these along.
        "${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            -d .gpu-wheels "pycocotools==2.0.11"
        ls .gpu-wheels
        ;;
    gpu-check)
        # Runs odperf from this source tree with the GPU image's own Python (torch, NVML, pytest-benchmark).
        if compgen -G ".gpu-wheels/*.whl" >/dev/null; then
            python3 -m pip install --quiet --no-index --no-deps --target .gpu-wheels/site .gpu-wheels/*.whl
        fi
        PYTHONPATH="$PWD/src:$PWD/.gpu-wheels/site${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m odperf.gpu_check "$@"
        ;;
    *)
        echo "usage: bash tasks.sh {bench|test|setup|report|gpu-wheels|gpu-check} [args...]" >&2
        exit 2
        ;;
esac
