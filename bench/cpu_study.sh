#!/usr/bin/env bash
# `mirage study` on the CPU alone and beside one competing CPU-bound process (run on a quiet machine):
#   bash bench/cpu_study.sh OUT_DIR [VARIANTS]
# VARIANTS (comma-separated, default quiet,loaded,loaded-threads1,loaded-passive):
#   quiet            the study with mirage's default threads (the cores this process may use)
#   loaded           the same while one busy-looping process (one core's worth) runs beside it
#   loaded-threads1  loaded, with `mirage --threads 1`
#   loaded-passive   loaded, with OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep instead of spinning at barriers)
# STUDY_ARGS (environment) is added to the study's command line, e.g. "--limit 4 --steps 2" to check the script.
# Each variant's wall seconds go to OUT_DIR/cpu_study.json with the machine's core count and the threads mirage
# chose; the target is loaded <= 2.5 x quiet. Numbers go to bench/RESULTS.md by hand (date, machine, commit).
set -uo pipefail
OUT=${1:?OUT_DIR}
VARIANTS=${2:-quiet,loaded,loaded-threads1,loaded-passive}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-src}
unset OMP_NUM_THREADS  # mirage chooses; a set OMP_NUM_THREADS would be kept and hide the choice
PY=${PY:-python}
STUDY_ARGS=${STUDY_ARGS:-}
JSON="$OUT/cpu_study.json"
CORES=$($PY -c "from mirage.threads import affinity_cores, cgroup_quota, choose_threads; \
print(affinity_cores(), cgroup_quota(), choose_threads())")
echo "{\"date\": \"$(date -u +%FT%TZ)\", \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null)\", \
\"affinity_quota_threads\": \"$CORES\", \"runs\": {" > "$JSON"

first=1
for v in ${VARIANTS//,/ }; do
  pre=() env=()
  case $v in
    quiet|loaded) ;;
    loaded-threads1) pre=(--threads 1) ;;
    loaded-passive) env=(OMP_WAIT_POLICY=PASSIVE) ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
  HOG=""
  if [[ $v == loaded* ]]; then
    $PY -c "while True: pass" > /dev/null 2>&1 &
    HOG=$!
  fi
  rm -rf "$OUT/study-$v"
  t0=$(date +%s%N)
  env "${env[@]}" $PY -m mirage "${pre[@]}" study --out "$OUT/study-$v" -q $STUDY_ARGS > "$OUT/study-$v.log" 2>&1
  rc=$?
  s=$(awk "BEGIN {printf \"%.1f\", ($(date +%s%N) - $t0) / 1e9}")
  [[ -n $HOG ]] && kill "$HOG"
  echo "[$(date +%T)] $v: ${s} s (rc $rc)"
  [[ $first == 1 ]] || echo "," >> "$JSON"
  first=0
  echo "\"$v\": {\"seconds\": $s, \"rc\": $rc}" >> "$JSON"
done
echo "}}" >> "$JSON"
cat "$JSON"
