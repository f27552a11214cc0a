#!/usr/bin/env bash
# The MiniLM teacher of the study for one task, and the search for its students' learning rate.
# Teacher: all-MiniLM-L6-v2 fine-tuned by run.py at lr 5e-5 for 4 epochs, taken as is from issue 14's
# transformers reference (5e-5 to 1e-4 over 4 epochs reached about 86.5 F1 on MRPC and 0.85 to 0.86 Pearson
# on STS-B; the old recipe, 2e-5 for 3 epochs, gave 83.2 and 79.7); no search for the teacher.
# Students: the finetune student of seed 1 at each rate of LR_GRID (experiments/recipe.sh), in runs/lr/TASK-RATE;
# put the best into STUDENT_LR before experiments/study.sh TASK.
# usage: experiments/teachers.sh TASK   (one thread: OMP_NUM_THREADS=1 taskset -c N experiments/teachers.sh TASK)
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/recipe.sh
teacher_flags "$1"
student_flags "$1"
python run.py "${TEACHER[@]}" --teacher-only
for lr in "${LR_GRID[@]}"; do
  python run.py "${STUDENT[@]}" --method finetune --seeds 1 --lr "$lr" --out "runs/lr/$1-$lr" --resume
done
