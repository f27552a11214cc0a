#!/usr/bin/env bash
# Does the choice of knowledge matter more when the student does not start from the teacher? (issue 27, part 1:
# the initialisation confound). Students start from the fine-tuned teacher's mapped layers in every other run here,
# so FinK and ResK partly repeat what the student already holds. This runs fixed subsets with the student taken
# from the pre-trained checkpoint's mapped layers instead (--student-init weights/minilm-l6, BERT-PKD's start), at
# subsets.sh's flags and from its teacher, into runs/init/TASK; experiments/subset_table.py runs/init/TASK beside
# experiments/logs/subsets/TASK compares the spread of the subsets under the two starts.
# usage: experiments/init_subsets.sh TASK SEEDS   one thread: OMP_NUM_THREADS=1 taskset -c N. SUBSETS (default:
# all and the four that leave one knowledge out, knockout's five, 15 runs for 3 seeds where all 12 would be 36)
# names the subsets. Rerun to continue (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/recipe.sh
SUBSETS=${SUBSETS:-subset-1111,subset-0111,subset-1011,subset-1101,subset-1110}
subsets_student_flags "$1"
for seed in ${2//,/ }; do
  python run.py "${SUBSETS_STUDENT[@]}" --student-init weights/minilm-l6 --method "$SUBSETS" --seed "$seed" \
    --out "runs/init/$1" --resume
done
