#!/usr/bin/env bash
# odperf's entry point for people and CI. Each task first makes sure the virtual environment in .venv
# exists and matches pyproject.toml and setup.py (idempotent: a second run installs nothing), then runs.
#
#   bash tasks.sh bench [pytest args...]   the main job: every embedded model x batch size on this machine
#   bash tasks.sh test  [pytest args...]   the library's tests, the CI smoke run of the real suite, and
#                                          odperf ab of this commit against its merge base (CI gates itself)
#   bash tasks.sh calibrate-gate N [args] false alarms (A/A) and detections (planted +25%) of odperf ab
#   bash tasks.sh calibrate-saved-runs N [args]  the same for odperf gate on two saved runs (odperf gate --calibrate)
#   bash tasks.sh board-link [args]       SSH against local pipes on the stand-in board's Python 3.6 (odperf ab)
#   bash tasks.sh setup                    only create/refresh .venv
#   bash tasks.sh report                   re-render reports/main from the main job's saved JSON
#   bash tasks.sh gpu-wheels               download the small wheels a GPU image lacks into .gpu-wheels/
#   bash tasks.sh gpu-check [args...]      on a GPU machine with PyTorch (no venv, no TensorFlow): the GPU check
#   bash tasks.sh gpu-check spread --out reports/gpu-NAME/spread    ... the spread study (fresh workers, variants)
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
    want=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
    if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
        "$PY" -m pip install --quiet --upgrade pip
        # both runtimes (TensorFlow by default, PyTorch), and every extra the tests use
        "$PY" -m pip install --quiet -e ".[torch,report,stream,ray,test,pipeline,nats]"
        # The deprecated `pynvml` package (odperf's NVML dependency before nvidia-ml-py) stays in older venvs
        # and warns on every NVML import: remove it, then put back nvidia-ml-py's pynvml.py, which old
        # releases of it shared.
        "$PY" -m pip uninstall --quiet --yes pynvml 2>/dev/null || true
        "$PY" -m pip install --quiet --force-reinstall --no-deps nvidia-ml-py
        echo "$want" >"$STAMP"
    fi
}

gate_self() {
    local head base
    head=$(git rev-parse HEAD)
    base=$(git merge-base HEAD origin/main 2>/dev/null || true)
    if [[ -z "$base" || "$base" == "$head" ]]; then
        base=$(git rev-parse --verify --quiet HEAD~1 || true)
    fi
    if [[ -z "$base" ]]; then
        echo "odperf ab: NOT RUN: no baseline commit (no merge base with origin/main and no parent of HEAD)"
        return 0
    fi
    echo "odperf ab: gating $(git log -1 --format='%h %s' HEAD) against $(git log -1 --format='%h %s' "$base")"
    # --ci (odperf.commands.ab.CI_SETTINGS, calibrated in reports/gate-calibration): a slowdown must pass +15% and a
    # paired t-test at p < 0.05 over 6 pairs (deployment and memory at p < 0.01); any changed outcome or
    # mAP fails.
    local t0=$SECONDS
    "$PY" -m odperf.cli ab --baseline-ref "$base" --ci --out .benchmarks/ab
    echo "odperf ab: the self-gate took $((SECONDS - t0)) s"
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
        # The stand-in boards of tests/test_board.py, made beside the project's venv: openssh-server (apt, as
        # root, when missing) and Python 3.6.15 venvs under .odperf-cache/ (made once), one with TensorFlow
        # 1.15.5 + numpy 1.18.5, one with torch 1.10.1 + torchvision 0.11.2.
        bash tests/board_stand_in.sh >/dev/null & tf_board=$!
        bash tests/board_stand_in.sh torch >/dev/null & torch_board=$!
        setup
        wait "$tf_board" && wait "$torch_board"
        # The pipeline tests start a real redis-server and nats-server on 127.0.0.1: install what is missing
        # where we can (root, apt).
        missing=()
        command -v redis-server >/dev/null || missing+=(redis-server)
        command -v nats-server >/dev/null || missing+=(nats-server)
        if [[ ${#missing[@]} -gt 0 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
        fi
        # Functional tests spread over both cores; none of them is timed by pytest-benchmark. The 25 slowest
        # are listed, so that what CI spends its time on stays in view.
        # Two test processes share the cores: PyTorch's OpenMP threads wait asleep (odperf.engine.runtime), so
        # that the other's work slows a case in proportion instead of by its spinning.
        OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} "$PY" -m pytest tests -n "${ODPERF_TEST_WORKERS:-2}" --durations=25 "$@"
        # The real suite on the embedded default, smoke-sized: one process, saved JSON read back and checked.
        "$PY" -m odperf.cli bench --smoke
        # odperf gates itself: this change against its merge base with main (main's previous commit on
        # main), interleaved on this machine; fails on a significant slowdown of the measuring path
        # (time per image through the harness, deployment), the model's memory, or any changed outcome or mAP.
        gate_self
        ;;
    board-link)
        setup
        # What the SSH link adds on a board: its interpreter (the stand-in's Python 3.6.15 + TensorFlow 1.15.5)
        # through local pipes against the same over a real sshd on 127.0.0.1, interleaved and gated by odperf
        # ab: bash tasks.sh board-link [ab options]
        "$PY" tests/sshd_board.py bash -c '"$0" -m odperf.cli ab --models centernet_tiny,faster_rcnn_fpn \
            --batch-sizes 1,64 --images 5 --pairs 4 --accuracy --strict --out .benchmarks/board-link \
            --baseline-args="--odperf-board=tx2=local://?python=$ODPERF_BOARD_PYTHON" \
            --candidate-args="--odperf-board=$ODPERF_BOARD_SSH" "$@" -- -m tx2' "$PY" "$@"
        ;;
    calibrate-gate)
        setup
        # N A/A comparisons and N against a planted slowdown: bash tasks.sh calibrate-gate 10 [ab options]
        exec "$PY" -m odperf.cli ab --calibrate "$@"
        ;;
    calibrate-saved-runs)
        setup
        # N rounds of saved runs (HEAD, HEAD, HEAD + planted +25% time and memory), every pair gated; the noise
        # of this machine written beside the report: bash tasks.sh calibrate-saved-runs 10 [gate options]
        exec "$PY" -m odperf.cli gate --calibrate "$@"
        ;;
    report)
        setup
        runs=(.benchmarks/main.json .benchmarks/main-cpu_400mb.json)
        [[ -f .benchmarks/main-stream.json ]] && runs+=(.benchmarks/main-stream.json)   # the streaming pass
        exec "$PY" -m odperf.cli report "${runs[@]}" --out reports/main "$@"
        ;;
    gpu-wheels)
        # For a GPU image with its own Python 3.12 and torch but without the COCO scorers and LoadGen: carry these.
        "${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            -d .gpu-wheels "pycocotools==2.0.11" "faster-coco-eval==1.8.0" "mlcommons-loadgen==6.0.17"
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
        echo "usage: bash tasks.sh {bench|test|setup|report|board-link|calibrate-gate|calibrate-saved-runs|gpu-wheels|gpu-check} [args...]" >&2
        exit 2
        ;;
esac
