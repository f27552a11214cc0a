#!/usr/bin/env bash
# Which score should a search rank its proxies by: the task metric or minus the gold loss on the reward
# split (run.py --search-score)? Chosen on the seeds part 1 of issue 27 already ran (experiments/subsets.sh:
# every subset's whole run, seeds 1-3), never on the fresh seeds 6-10. A search's proxies are the same runs
# whatever the score (knockout's one rung; halving's first), and its log has both scores for each, so one
# search per seed answers for both: the run is stopped once the search's last proxy is scored (the final
# run would repeat part 1's run of the winner, bit for bit). Runs go to runs/score/TASK; the table:
# experiments/search_table.py runs/score/TASK experiments/logs/subsets/TASK.
# usage: experiments/search_score.sh TASK METHOD SEEDS   e.g. mrpc knockout 1,2,3; one thread each
# (OMP_NUM_THREADS=1 taskset -c N). Rerun to continue (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/recipe.sh
subsets_student_flags "$1"
for seed in ${3//,/ }; do
  log="runs/score/$1/$2-s$seed/log.jsonl"
  grep -qs '"winner"' "$log" && continue
  python run.py "${SUBSETS_STUDENT[@]}" --method "$2" --seed "$seed" --out "runs/score/$1" --resume &
  run=$!
  until grep -qs '"winner"' "$log" || ! kill -0 "$run" 2>/dev/null; do sleep 5; done
  kill "$run" 2>/dev/null || true
  wait "$run" || true
done
