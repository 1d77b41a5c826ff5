#!/usr/bin/env bash
# A rank killed with SIGKILL in the middle of training (tests/distributed/dead_rank_probe.cpp):
# mpirun must end the other rank, exit non-zero and name the lost rank, and the checkpoint rank 0
# wrote last must be whole and load.
#   dead_rank.sh MPIEXEC PROBE_PROGRAM OUT_DIR
set -uo pipefail
mpiexec=$1 program=$2 out=$3
rm -rf "$out" && mkdir -p "$out"
"$mpiexec" -np 2 --oversubscribe "$program" train "$out" 1 >"$out/log.txt" 2>&1
status=$?
cat "$out/log.txt"
if [ "$status" -eq 0 ]; then
  echo "FAIL: mpirun exited 0 although rank 1 was killed"
  exit 1
fi
if ! grep -Eq "rank 1 .*(signal 9|Killed)" "$out/log.txt"; then
  echo "FAIL: mpirun's output does not name the lost rank (rank 1, signal 9)"
  exit 1
fi
if [ ! -f "$out/model.safetensors" ]; then
  echo "FAIL: no checkpoint"
  exit 1
fi
# Alone, outside mpirun: the last checkpoint loads.
"$program" load "$out" || {
  echo "FAIL: the last checkpoint does not load"
  exit 1
}
echo "mpirun exited $status and named the lost rank; the last checkpoint loads"
