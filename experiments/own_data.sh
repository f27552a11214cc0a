#!/usr/bin/env bash
# Your own data (issue 30): GLUE TASK's rows rewritten as CSV with other column names and a task.json
# (experiments/glue_as_csv.py, in OUT/data), a 3-layer student distilled on them at the study's recipe
# (experiments/recipe.sh) without and with a simple augmented copy of train (experiments/augment.py: AUG_COPIES
# copies of each row, words dropped and swapped), methods all, kd and ksm-soft; then what the augmented
# rows did (experiments/own_table.py). The teacher is the study's (runs/study/TASK/teacher, fine-tuned on the
# same train rows, its classes matched to the CSV's labels by name) where it exists; else it is fine-tuned
# here with the study's teacher flags, on the original rows, into OUT/plain/teacher. On CoLA a dropped or
# swapped word can make an acceptable sentence unacceptable, so the label an augmented row copies can be
# wrong: run.py's default (no FinK on augmented rows) leaves such rows to the teacher's knowledge.
# usage: experiments/own_data.sh TASK SEEDS [more run.py flags]     e.g. experiments/own_data.sh cola 1,2,3
# env: OUT (default runs/own/TASK); ROWS=N keeps the first N rows of train and dev (a smaller task or a smoke
# test); AUG_COPIES (default 4); LR, the student's learning rate (default the task's in recipe.sh, required for a
# task that has none there, such as sst2). Rerun to continue (--resume; an unfinished run continues from its checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/recipe.sh
TASK=$1 SEEDS=$2
shift 2
OUT=${OUT:-runs/own/$TASK}
LR=${LR:-${STUDENT_LR[$TASK]:-}}
if [[ -z $LR ]]; then
  echo "experiments/own_data.sh: no student learning rate for $TASK in experiments/recipe.sh: set LR" >&2
  exit 2
fi
DATA=$OUT/data
if [[ ! -f $DATA/task.json ]]; then
  python experiments/glue_as_csv.py "$TASK" "$DATA" ${ROWS:+--rows "$ROWS"}
fi
COLUMNS=$(python -c "import json, sys; print(','.join(json.load(open(sys.argv[1]))['text_columns']))" "$DATA/task.json")
if [[ ! -f $DATA/train_aug.csv ]]; then
  python experiments/augment.py "$DATA/train.csv" "$DATA/train_aug.csv" --text-columns "$COLUMNS" \
      --copies "${AUG_COPIES:-4}" --seed 0
fi
if [[ -f runs/study/$TASK/teacher/model.safetensors ]]; then
  TEACHER=(--teacher "runs/study/$TASK/teacher")
else
  teacher_flags "$TASK" "$OUT/plain"
  python run.py --task "$DATA/task.json" "${TEACHER[@]:2}" --teacher-only "$@"
  TEACHER=(--teacher "$OUT/plain/teacher")
fi
FLAGS=(--task "$DATA/task.json" "${TEACHER[@]}" --student-layers "$STUDENT_LAYERS" --lr "$LR"
       --method all,kd,ksm-soft --seeds "$SEEDS" --resume)
python run.py "${FLAGS[@]}" --out "$OUT/plain" "$@"
python run.py "${FLAGS[@]}" --out "$OUT/augmented" --augment "$DATA/train_aug.csv" "$@"
python experiments/own_table.py "$OUT/plain" "$OUT/augmented"
