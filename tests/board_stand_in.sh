#!/usr/bin/env bash
# The stand-in board's interpreter: the TX2's stack (Python 3.6 with TensorFlow 1.15.5 and numpy 1.18.5)
# in a venv under .odperf-cache/ (idempotent; prints the venv's python). Python 3.6 comes from pyenv
# (ODPERF_PY36 overrides); OpenSSH's server is installed with apt when missing and this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.odperf-cache/board-py36-tf115
PYENV_ROOT_DIR=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
PY36="${ODPERF_PY36:-$PYENV_ROOT_DIR/versions/3.6.15/bin/python}"
if [[ ! -x /usr/sbin/sshd && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq >&2 && apt-get install -y -qq openssh-server >&2
fi
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"  # two test processes asking at once: one makes the venv, the other waits for it
flock 9
if [[ ! -f "$VENV/.ready" ]]; then
    [[ -x "$PY36" ]] || { echo "board stand-in: no Python 3.6 at $PY36 (install 3.6.15 with pyenv or set ODPERF_PY36)" >&2; exit 2; }
    rm -rf "$VENV"
    "$PY36" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade "pip<22" >&2
    "$VENV/bin/python" -m pip install --quiet "tensorflow==1.15.5" "numpy==1.18.5" >&2
    "$VENV/bin/python" -c "import tensorflow, numpy" >&2
    touch "$VENV/.ready"
fi
echo "$PWD/$VENV/bin/python"
