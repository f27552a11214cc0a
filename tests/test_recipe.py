"""experiments/recipe.sh, the study's shared flags: a task with no student learning rate stops every script
with one line that names the task and the fix, before any work (bash's own error would name neither)."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def source_and_call(function: str, flags: str, task: str) -> subprocess.CompletedProcess:
    """Source recipe.sh under the scripts' `set -euo pipefail`, call function for task, print the array it sets."""
    script = f'set -euo pipefail; source experiments/recipe.sh; {function} {task}; echo "${{{flags}[@]}}"'
    return subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True)


FUNCTIONS = [("study_flags", "STUDY"), ("subsets_student_flags", "SUBSETS_STUDENT")]


@pytest.mark.parametrize("function,flags", FUNCTIONS)
def test_a_task_with_no_student_rate_stops_with_one_line(function, flags):
    done = source_and_call(function, flags, "rte")
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "experiments/recipe.sh: no student learning rate for rte: run experiments/teachers.sh rte, "
        "then add its best to STUDENT_LR"]


@pytest.mark.parametrize("function,flags", FUNCTIONS)
def test_a_task_with_a_rate_gets_it(function, flags):
    done = source_and_call(function, flags, "mrpc")
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split()
    assert printed[printed.index("--task") + 1] == "mrpc" and printed[printed.index("--lr") + 1] == "2e-4"


def test_the_teacher_model_and_the_output_folder_can_be_named():
    """speed/gpu_e2e.sh runs the study's recipe with the teacher it carries to the GPU machine, into its own folder."""
    script = 'source experiments/recipe.sh; study_flags stsb out/e2e .gpu/e2e/minilm-l6; echo "${STUDY[@]}"'
    printed = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True).stdout.split()
    after = lambda flag: printed[printed.index(flag) + 1]
    assert (after("--teacher"), after("--out"), after("--lr")) == (".gpu/e2e/minilm-l6", "out/e2e", "2e-4")
    assert printed.count("--teacher") == 1
