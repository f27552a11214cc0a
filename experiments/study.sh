#!/usr/bin/env bash
# Issue 14's protocol on one task: every method at the default schedule, 3-layer students from the
# MiniLM teacher of experiments/teachers.sh (same --out, so the teacher and its cache are reused), at the
# student learning rate experiments/teachers.sh chose (experiments/recipe.sh STUDENT_LR).
# 5 seeds for finetune, kd, all and ksm-soft; 3 for the others; then the control, all with the selectors'
# loss normalisation (--loss-norm ema), 3 seeds, in runs/study-ema/TASK. usage: experiments/study.sh TASK
# One thread per process (OMP_NUM_THREADS=1 taskset -c N); rerun to continue (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/recipe.sh
study_flags "$1"
python run.py "${STUDY[@]}" --method finetune,kd,all,ksm-soft --seeds 1,2,3,4,5
python run.py "${STUDY[@]}" --method pkd,random-soft,random-hard,ksm-hard --seeds 1,2,3
student_flags "$1"
python run.py "${STUDENT[@]}" --lr "${STUDENT_LR[$1]}" --loss-norm ema --method all --seeds 1,2,3 --resume \
  --out "runs/study-ema/$1"
