#!/usr/bin/env bash
# halving (run.py --method halving, issue 27) on one task, beside the whole runs of every fixed subset that
# subsets.sh made: the same teacher (runs/subsets/TASK/teacher, fine-tuned on 90% of train), the same
# --holdout 0.1 and student learning rate, so experiments/halving_table.py can rank its proxy runs against
# the whole runs, seed by seed. Its runs go to runs/halving/TASK.
# usage: experiments/halving.sh TASK SEEDS   (one thread: OMP_NUM_THREADS=1 taskset -c N experiments/halving.sh ...)
# Rerun to continue (--resume; an unfinished run continues from its last checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/recipe.sh
teacher_flags "$1" "runs/subsets/$1"
python run.py "${TEACHER[@]}" --holdout 0.1 --teacher-only  # fine-tunes it unless subsets.sh did
for seed in ${2//,/ }; do
  python run.py --task "$1" --teacher "runs/subsets/$1/teacher" --student-layers "$STUDENT_LAYERS" --holdout 0.1 \
    --lr "${STUDENT_LR[$1]}" --method halving --seed "$seed" --out "runs/halving/$1" --resume
done
