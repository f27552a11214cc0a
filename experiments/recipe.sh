# The study's recipe (issue 14), in one place for experiments/teachers.sh and experiments/study.sh.
# Teacher: all-MiniLM-L6-v2 fine-tuned by run.py at lr 5e-5 for 4 epochs (why: experiments/teachers.sh), kept in
# runs/study/TASK/teacher. Students: 3 layers, every run in runs/study/TASK, at the task's student learning
# rate. A finished run is reused only with the flags it was made with (run.py --resume), so the scripts
# share these flags to share their runs.
# usage: source experiments/recipe.sh; study_flags TASK; python run.py "${STUDY[@]}" --method ... --seeds ...

# The student learning rates experiments/teachers.sh searches: the finetune student, seed 1, scored on dev (the
# usual recipe search on dev, which favours finetune a little: it chose the rate). STUDENT_LR holds each
# task's best; experiments/RESULTS-kd.md, "The student's learning rate", has the scores.
LR_GRID=(5e-5 1e-4 2e-4 4e-4)
declare -A STUDENT_LR=([mrpc]=2e-4 [stsb]=2e-4 [cola]=1e-4)

STUDENT_LAYERS=3  # the paper's BERT3 analogue; the teacher's cached outputs are those of its layer map

# Whatever reads STUDENT_LR calls this first (study_flags, subsets_student_flags, subsets.sh), so a task with no
# rate stops with one line before any work (bash's own 'unbound variable' names neither the task nor the fix).
# student_flags needs no rate: its callers search one (teachers.sh, selection.sh).
student_lr() {  # TASK: fails with a one-line error where STUDENT_LR has no rate for TASK
  if [[ -z "${STUDENT_LR[$1]:-}" ]]; then
    echo "experiments/recipe.sh: no student learning rate for $1: run experiments/teachers.sh $1, then add its best to STUDENT_LR" >&2
    return 1
  fi
}

# TASK [OUT [MODEL]]: OUT by default runs/study/TASK; MODEL, the pretrained teacher, by default weights/minilm-l6
teacher_flags() {
  TEACHER=(--task "$1" --teacher "${3:-weights/minilm-l6}" --teacher-lr 5e-5 --teacher-epochs 4
           --student-layers "$STUDENT_LAYERS" --out "${2:-runs/study/$1}")
}

# A student of the study's teacher, in another output folder (the lr search, experiments/selection.sh): run.py
# reads the teacher's outputs from runs/study/TASK rather than computing its own.
student_flags() {
  STUDENT=(--task "$1" --teacher "runs/study/$1/teacher" --student-layers "$STUDENT_LAYERS")
}

# A student of issue 27's teacher (experiments/subsets.sh's, in runs/subsets/TASK: fine-tuned without the held-out
# 10% of train) at the selectors' flags: what experiments/fresh_seeds.sh, search_score.sh and init_subsets.sh run.
subsets_student_flags() {
  student_lr "$1" || return 1
  SUBSETS_STUDENT=(--task "$1" --teacher "runs/subsets/$1/teacher" --student-layers "$STUDENT_LAYERS" --holdout 0.1
                   --lr "${STUDENT_LR[$1]}" --loss-norm ema)
}

study_flags() {  # TASK [OUT [MODEL]], as teacher_flags
  student_lr "$1" || return 1
  teacher_flags "$@"
  STUDY=("${TEACHER[@]}" --lr "${STUDENT_LR[$1]}" --resume)
}
