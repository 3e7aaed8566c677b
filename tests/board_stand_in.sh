#!/usr/bin/env bash
# The stand-in board's interpreter: the TX2's stack (Python 3.6 with TensorFlow 1.15.5 and numpy 1.18.5)
# in a venv under .odperf-cache/ (idempotent; prints the venv's python). With "torch": the TX2's PyTorch
# instead (JetPack 4.6 has torch 1.10 and torchvision 0.11; PyPI's nearest pair for Python 3.6 on x86_64 is
# torch 1.10.1 with torchvision 0.11.2), in a venv of its own; with "numpy": numpy alone. Python 3.6 comes from pyenv
# (ODPERF_PY36 overrides); OpenSSH's server is installed with apt when missing and this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.odperf-cache/board-py36-tf115
PACKAGES=("tensorflow==1.15.5" "numpy==1.18.5")
IMPORTS="tensorflow, numpy"
if [[ "${1:-}" == torch ]]; then
    VENV=.odperf-cache/board-py36-torch110
    PACKAGES=("torch==1.10.1" "torchvision==0.11.2" "numpy==1.18.5")
    IMPORTS="torch, torchvision, numpy"
elif [[ "${1:-}" == numpy ]]; then  # a board with no framework, which odperf must refuse
    VENV=.odperf-cache/board-py36-numpy
    PACKAGES=("numpy==1.18.5")
    IMPORTS="numpy"
fi
PYENV_ROOT_DIR=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
PY36="${ODPERF_PY36:-$PYENV_ROOT_DIR/versions/3.6.15/bin/python}"
mkdir -p "$(dirname "$VENV")"
(
    flock 8  # both stand-ins may be made at once: one apt-get at a time
    if [[ ! -x /usr/sbin/sshd && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq >&2 && apt-get install -y -qq openssh-server >&2
    fi
) 8>"$(dirname "$VENV")/apt.lock"
exec 9>"$VENV.lock"  # two test processes asking at once: one makes the venv, the other waits for it
flock 9
if [[ ! -f "$VENV/.ready" ]]; then
    [[ -x "$PY36" ]] || { echo "board stand-in: no Python 3.6 at $PY36 (install 3.6.15 with pyenv or set ODPERF_PY36)" >&2; exit 2; }
    rm -rf "$VENV"
    "$PY36" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade "pip<22" >&2
    "$VENV/bin/python" -m pip install --quiet "${PACKAGES[@]}" >&2
    "$VENV/bin/python" -c "import $IMPORTS" >&2
    touch "$VENV/.ready"
fi
echo "$PWD/$VENV/bin/python"
