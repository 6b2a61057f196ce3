#!/usr/bin/env bash
# Runs many one-seed trainings of bench/quality.py (grid or ring) side by side until a deadline, for a recipe sweep
# on a machine with many cores or a GPU (a short device lease). JOBS holds one training per line:
# "SEED [KEY=VALUE ...]" (recipe overrides). Each finished run's result row is appended to OUT/summary.txt at once,
# so a run cut short still returns what finished; every run's full output goes to OUT/runs.log at the end.
#
#   P=15 DEADLINE_S=520 DEVICE=cuda bench/grid_sweep.sh JOBS OUT [grid|ring]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
JOBS=${1:?usage: bench/grid_sweep.sh JOBS OUT [grid|ring]}
OUT=${2:?usage: bench/grid_sweep.sh JOBS OUT [grid|ring]}
PART=${3:-grid}
CORES=$(nproc)
P=${P:-$CORES}
DEADLINE_S=${DEADLINE_S:-520}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
end=$(( $(date +%s) + DEADLINE_S ))
echo "== $(date -u +%H:%M:%S) $(uname -n), $CORES cores, $P at a time, device $DEVICE, deadline ${DEADLINE_S}s" \
  | tee -a "$OUT/summary.txt"

run_one() {  # $1: job number, rest: the job line
  local n=$1; shift; local seed=$1; shift; local sets=() kv
  for kv in "$@"; do sets+=(--set "$kv"); done
  local left=$(( end - $(date +%s) ))
  local t0; t0=$(date +%s)
  timeout "$left" "$PY" -m bench.quality "$PART" --seeds 1 --first-seed "$seed" --threads 1 --device "$DEVICE" \
    "${sets[@]}" > "$LOGS/$n.out" 2> "$LOGS/$n.err"
  local rc=$?
  local row; row=$(grep -E "^  [a-z0-9]+ seed $seed:" "$LOGS/$n.err" | tail -1)
  local last; last=$(grep -E "step" "$LOGS/$n.err" | tail -1)
  echo "job $n rc=$rc $(( $(date +%s) - t0 ))s seed=$seed sets=[$*] ${row:-unfinished, last progress: $last}" \
    >> "$OUT/summary.txt"
}

n=0
while read -r line; do
  [ -z "$line" ] && continue
  [ "$(date +%s)" -ge "$end" ] && break
  while [ "$(jobs -rp | wc -l)" -ge "$P" ]; do wait -n; done
  [ "$(date +%s)" -ge "$end" ] && break
  n=$((n + 1))
  # shellcheck disable=SC2086
  run_one "$n" $line &
done < "$JOBS"
wait
for f in "$LOGS"/*.err; do
  [ -e "$f" ] || continue
  echo "=== job $(basename "$f" .err)"; cat "${f%.err}.out" "$f"
done > "$OUT/runs.log"
echo "== $(date -u +%H:%M:%S) done, $n jobs started" | tee -a "$OUT/summary.txt"
