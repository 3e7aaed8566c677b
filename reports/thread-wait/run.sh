#!/bin/bash
# The OpenMP wait settings of a PyTorch detector, idle and beside one busy process (see README.md here).
cd "$(dirname "$0")/../.."
model=${1:-fcos_tiny_torch}
for rep in 1 2; do
for load in 0 1; do
pids=()
for ((i=0;i<load;i++)); do .venv/bin/python -c "while True: pass" & pids+=($!); done
sleep 0.5
for setting in "OMP_WAIT_POLICY=PASSIVE" "NONE=1" "GOMP_SPINCOUNT=1000" "GOMP_SPINCOUNT=10000" "GOMP_SPINCOUNT=30000"; do
  r=$(env -u OMP_WAIT_POLICY $setting TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python reports/thread-wait/probe.py $model 2>/dev/null | tail -1)
  echo "rep=$rep load=$load $setting $r"
done
for p in "${pids[@]}"; do kill $p; done; wait 2>/dev/null
done; done
