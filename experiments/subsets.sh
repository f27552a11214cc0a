#!/usr/bin/env bash
# The headroom of knowledge selection on one task: every fixed subset of FinK, ResK, FeaK, RelK that
# run.py accepts (FinK or ResK on: 12), with the selectors' loss normalisation (--loss-norm ema; so
# subset-1111 is the control), 3-layer students at the study's student learning rate. 10% of train is
# held out of all training, the teacher's fine-tuning included (--holdout 0.1): a subset is chosen on it
# and reported on dev, which nothing chose (experiments/subset_table.py). Its own teacher, in runs/subsets/TASK,
# fine-tuned as experiments/teachers.sh fine-tunes the study's but on the other 90%.
# usage: experiments/subsets.sh TASK PART SEEDS   PART 0 or 1 runs half the subsets, so two processes (one
# thread each: OMP_NUM_THREADS=1 taskset -c N) share the work; seed by seed, so whole seeds finish
# first. Rerun to continue (--resume; an unfinished run continues from its checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/recipe.sh
PARTS=("subset-1000,subset-1100,subset-1001,subset-1101,subset-0111,subset-1111"
       "subset-0100,subset-1010,subset-0110,subset-1110,subset-0101,subset-1011")
student_lr "$1"
teacher_flags "$1" "runs/subsets/$1"
FLAGS=("${TEACHER[@]}" --holdout 0.1 --lr "${STUDENT_LR[$1]}" --loss-norm ema --resume)
for seed in ${3//,/ }; do
  python run.py "${FLAGS[@]}" --method "${PARTS[$2]}" --seed "$seed"
done
