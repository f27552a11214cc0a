#!/usr/bin/env bash
# Does the KSM select? (experiments/RESULTS-kd.md, "Knowledge selection that selects")
#   A: planted harm. ResK is trained against the teacher's logits reversed (STS-B: 5 - t):
#      all applies it at full weight; ksm-soft and ksm-hard should turn it down. The control, all with
#      the KSM's loss normalisation (--loss-norm ema; the chosen weights already sum to 4 like all's),
#      separates what the choice does from what the normalisation does.
#   B: no harm: what the agent chooses, ksm-soft against all paired by seed; finetune and kd beside,
#      kd also for the cost ratio; the same control without harm. Like A, at the default student
#      learning rate (5e-5), where issue 12 measured it; the study (experiments/study.sh) later moved its
#      students to experiments/recipe.sh's rates and keeps its runs apart, in runs/study/TASK.
# usage: experiments/selection.sh TASK [SEEDS] [A|B]   (default seeds 1,2,3, both parts)
# Needs the task's teacher, fine-tuned once by experiments/teachers.sh. One thread per process: run
# tasks side by side pinned to their own core, e.g. OMP_NUM_THREADS=1 taskset -c 0 experiments/selection.sh stsb 1
# Rerunning continues unfinished runs from their checkpoints and reuses finished ones (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/recipe.sh
task=$1 seeds=${2:-1,2,3} parts=${3:-AB}
student_flags "$task"
common=("${STUDENT[@]}" --seeds "$seeds" --resume)
if [[ $parts == *A* ]]; then
  python run.py "${common[@]}" --method all,ksm-soft,ksm-hard --corrupt resk --out "runs/select/$task-resk"
  python run.py "${common[@]}" --method all --corrupt resk --loss-norm ema --out "runs/select/$task-resk-ema"
fi
if [[ $parts == *B* ]]; then
  python run.py "${common[@]}" --method all,ksm-soft,kd,finetune --out "runs/study-lr5e-5/$task"
  python run.py "${common[@]}" --method all --loss-norm ema --out "runs/select/$task-ema"
fi
