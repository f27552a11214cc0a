#!/usr/bin/env bash
# The test on seeds no choice has seen (issue 27, part 3): seeds 6-10, nothing was chosen on them. Per task,
# the selectors (halving, knockout, ksm-soft), random-soft, the best fixed subset of part 1 (chosen on held-out rows:
# subset_table.py) and the control (subset-1111: all four with the selectors' normalisation), all with
# --holdout 0.1 and --loss-norm ema (what auto gives the selectors), from subsets.sh's teacher. Runs go to
# runs/fresh/TASK; the tables: experiments/fresh_table.py runs/fresh/TASK BEST (each method paired by seed
# against the control, the best subset, ksm-soft and random-soft) and experiments/search_table.py runs/fresh/TASK
# experiments/logs/subsets/TASK (the proxies against part 1's runs).
# usage: experiments/fresh_seeds.sh TASK BEST PART   BEST: part 1's best subset by its digits (0111). PART 0 or 1
# splits the methods between two processes (one thread each: OMP_NUM_THREADS=1 taskset -c N): part 0 the searches
# (5 runs' time a seed), part 1 the control on every seed first (what the searches are paired with), then the best
# subset, then ksm-soft and random-soft. SEEDS (default "6 7 8 9 10") runs fewer; SEARCHES (default
# "halving,knockout") the searches of part 0; SEARCH_SCORE (default loss) the score they rank their proxies by
# (run.py --search-score; experiments/search_score.sh chooses it on part 1's seeds). Rerun to continue (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/recipe.sh
PARTS=("${SEARCHES:-halving,knockout}" "subset-1111 subset-$2 ksm-soft,random-soft")
SCORE=(--search-score "${SEARCH_SCORE:-loss}")  # read by the searches only: part 0
[[ $3 == 0 ]] || SCORE=()
subsets_student_flags "$1"  # first: a task with no student rate stops here, before the teacher's fine-tuning
teacher_flags "$1" "runs/subsets/$1"
python run.py "${TEACHER[@]}" --holdout 0.1 --teacher-only
for methods in ${PARTS[$3]}; do
  for seed in ${SEEDS:-6 7 8 9 10}; do
    python run.py "${SUBSETS_STUDENT[@]}" --method "$methods" "${SCORE[@]}" --seed "$seed" --out "runs/fresh/$1" --resume
  done
done
