#!/usr/bin/env bash
# Issue 14's protocol on one task: every method at the default schedule, 3-layer students from the
# MiniLM teacher of bench/teachers.sh (same --out, so the teacher and its cache are reused).
# 5 seeds for finetune, kd, all and ksm-soft; 3 for the others. usage: bench/study.sh TASK
# One thread per process (OMP_NUM_THREADS=1 taskset -c N); rerun to continue (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
common=(--task "$1" --teacher weights/minilm-l6 --teacher-lr 5e-5 --teacher-epochs 4 --student-layers 3
        --out "runs/study/$1" --resume)
python run.py "${common[@]}" --method finetune,kd,all,ksm-soft --seeds 1,2,3,4,5
python run.py "${common[@]}" --method pkd,random-soft,random-hard,ksm-hard --seeds 1,2,3
