# The study's recipe (issue 14), in one place for bench/teachers.sh, bench/study.sh and bench/selection.sh:
# all-MiniLM-L6-v2 fine-tuned by run.py at lr 5e-5 for 4 epochs (why: bench/teachers.sh), 3-layer students,
# every run in runs/study/TASK. A finished run is reused only with the flags it was made with (run.py
# --resume), so the three scripts share these flags to share their runs.
# usage: source bench/recipe.sh; study_flags TASK; python run.py "${STUDY[@]}" --method ... --seeds ...
study_flags() {
  STUDY=(--task "$1" --teacher weights/minilm-l6 --teacher-lr 5e-5 --teacher-epochs 4 --student-layers 3
         --out "runs/study/$1" --resume)
}
