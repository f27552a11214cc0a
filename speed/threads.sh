#!/usr/bin/env bash
# Do two runs sharing a machine slow each other down (issue 28)? For each workload: two runs one after the
# other (the first is the run alone), the two at once, and one alone again (AFTER=0 skips it); wall seconds of
# each, and the ratio of the two at once (the later of the two to finish) to the two one after the other (their
# sum). Target: at most 1.1, with the run alone as fast as before the change. The thread counts the runs hold
# 30 s into the two at once (their claims, kd_ref/plumbing/threads.py) go to OUT/WORKLOAD-claims.txt.
# Threads are run.py's default choice (no OMP_NUM_THREADS: kd_ref/plumbing/threads.py); FLAGS="--threads $(nproc)" gives the old default, one thread a
# core in every run. Run it on an otherwise idle machine, and record the table in speed/BENCHMARKS.md.
#
#   speed/threads.sh [OUT]                 # OUT: default out/threads (removed first)
#
# Workloads (WORKLOADS, default "demo mrpc"):
#   demo: python run.py --demo (teacher fine-tuning, KSM episodes, final run; each run its own folder)
#   mrpc: python run.py --task $TASK --method kd --epochs 1 --student-layers 3 --lr 2e-4, from a teacher that
#         $TEACHER_CKPT fine-tuned once (--teacher-only, $TEACHER_FLAGS) into OUT/teacher, shared by every run
# Overrides, for a quick check that the script works: DEMO_FLAGS (added to the demo's flags), TASK (default
# mrpc), TEACHER_CKPT (default weights/minilm-l6), TEACHER_FLAGS (default: the study's recipe,
# --teacher-lr 5e-5 --teacher-epochs 4), KD_GLUE_DIR (run.py's data folder), FLAGS (added to every run).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/threads}
WORKLOADS=${WORKLOADS:-demo mrpc}
TASK=${TASK:-mrpc}
TEACHER_CKPT=${TEACHER_CKPT:-weights/minilm-l6}
TEACHER_FLAGS=${TEACHER_FLAGS:---teacher-lr 5e-5 --teacher-epochs 4}
unset OMP_NUM_THREADS  # the default is what is measured
rm -rf "$OUT"
mkdir -p "$OUT"

now() { python3 -c 'import time; print(time.monotonic())'; }

# one_run WORKLOAD NAME: a run of WORKLOAD into OUT/NAME; its wall seconds go to OUT/NAME.s
one_run() {
  local start
  start=$(now)
  case $1 in
    demo) python run.py --demo $FLAGS ${DEMO_FLAGS:-} --out "$OUT/$2" ;;
    mrpc) python run.py --task "$TASK" --teacher "$TEACHER" --method kd --epochs 1 --student-layers 3 \
            --lr 2e-4 $FLAGS --out "$OUT/$2" ;;
  esac > "$OUT/$2.log" 2>&1 || { echo "speed/threads.sh: $1 run $2 failed, see $OUT/$2.log" >&2; exit 1; }
  python3 -c "print(f'{$(now) - $start:.1f}')" > "$OUT/$2.s"
}

FLAGS=${FLAGS:-}
if [[ " $WORKLOADS " == *" mrpc "* ]]; then  # the shared teacher, fine-tuned and cached once, not timed
  python run.py --task "$TASK" --teacher "$TEACHER_CKPT" $TEACHER_FLAGS --student-layers 3 --teacher-only \
    $FLAGS --out "$OUT/teacher" > "$OUT/teacher.log" 2>&1 || { echo "teacher failed: $OUT/teacher.log" >&2; exit 1; }
  # OUT/teacher/teacher, or TEACHER_CKPT itself where it was fine-tuned already
  TEACHER=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["teacher"])' "$OUT/teacher/teacher.json")
fi

s() { cat "$OUT/$1.s"; }
echo "| workload | alone before s | alone after s | two one after the other s (sum) | two at once s (each) | at once / after each other |"
echo "|---|---|---|---|---|---|"
for w in $WORKLOADS; do
  one_run "$w" "$w-seq-1"
  one_run "$w" "$w-seq-2"
  one_run "$w" "$w-both-1" & first=$!
  one_run "$w" "$w-both-2" & second=$!
  (sleep 30; for f in "${TMPDIR:-/tmp}/kd-ref-threads-$(id -u)"/*.claim; do echo "$(basename "$f"): $(cat "$f")"; done) \
    > "$OUT/$w-claims.txt" 2>/dev/null &
  wait $first
  wait $second
  if [[ ${AFTER:-1} == 1 ]]; then one_run "$w" "$w-alone-after"; else echo - > "$OUT/$w-alone-after.s"; fi
  python3 - "$w" "$(s "$w-seq-1")" "$(s "$w-alone-after")" "$(s "$w-seq-2")" "$(s "$w-both-1")" "$(s "$w-both-2")" <<'EOF'
import sys
w, before, after, seq2, both1, both2 = sys.argv[1], float(sys.argv[2]), sys.argv[3], *map(float, sys.argv[4:])
print(f"| {w} | {before:.1f} | {after} | {before + seq2:.1f} ({before:.1f} + {seq2:.1f}) | {both1:.1f}, {both2:.1f} "
      f"| {max(both1, both2) / (before + seq2):.2f} |")
EOF
done
grep -h "^threads:" "$OUT"/*.log | sort | uniq -c | sed 's/^/  /' >&2  # the thread counts the runs chose
