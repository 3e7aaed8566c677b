#!/usr/bin/env bash
# A stand-in of NVIDIA's tegrastats for tests/test_board.py: its RAM field, computed as tegrastats does
# (MemTotal - MemFree - Buffers - Cached, in MiB) from this machine's /proc/meminfo, every --interval ms.
interval=1000
while [[ $# -gt 0 ]]; do
    case "$1" in --interval) interval="$2"; shift 2 ;; *) shift ;; esac
done
while true; do
    awk '/^MemTotal:/{t=$2} /^MemFree:/{f=$2} /^Buffers:/{b=$2} /^Cached:/{c=$2}
         END {printf "RAM %d/%dMB (lfb 100x4MB) SWAP 0/0MB (cached 0MB) CPU [1%%@2035]\n", (t-f-b-c)/1024, t/1024}' /proc/meminfo
    sleep "$(awk -v ms="$interval" 'BEGIN{print ms/1000}')"
done
