"""A teacher's classes must mean the task's: a teacher fine-tuned elsewhere carries its own class
order in config.json (id2label), which need not be the task's. Read blindly, a QNLI teacher with
entailment at index 1 would be scored near 1 - accuracy and distilled backwards.

So its classifier rows are put in the task's order by name where the names are real (a task
label, or its name in the Hugging Face GLUE datasets, Task.label_aliases; case ignored), a
conflict is refused in one line, and names that say nothing (LABEL_0, LABEL_1, ...) are taken
in the order given, with a note saying so."""
import re
import sys

import torch

from kd_ref.plumbing.errors import KdError


def match_labels(teacher, task, folder) -> None:
    """Reorder teacher's classifier rows, in place, to task.labels' order, and name them so
    (config.id2label). When they were reordered, teacher.class_order holds the teacher's class of
    each task class (part of the teacher cache's key)."""
    if task.labels is None:
        return
    n = teacher.config.num_labels
    names = [str((teacher.config.id2label or {}).get(i, f"LABEL_{i}")) for i in range(n)]
    if all(re.fullmatch(r"LABEL_\d+", name) for name in names):
        print(f"note: {folder}/config.json names its classes {', '.join(names)} only: taken as {task.name}'s "
              f"{', '.join(task.labels)}, in that order", file=sys.stderr)
    else:
        ours = {label.lower(): i for i, label in enumerate(task.labels)}
        ours |= {alias.lower(): i for i, alias in enumerate(task.label_aliases)}
        theirs = [ours.get(name.strip().lower()) for name in names]  # the task class of each teacher class
        if sorted(c for c in theirs if c is not None) != list(range(n)):
            raise KdError(f"{folder}/config.json: id2label {dict(enumerate(names))} does not name {task.name}'s "
                          f"classes {', '.join(task.labels)} one to one: its logits cannot be read in the task's "
                          "terms; fine-tune a teacher for this task, or name its classes in config.json as the task does")
        order = [theirs.index(c) for c in range(n)]  # the teacher class of each task class
        if order != list(range(n)):
            with torch.no_grad():
                teacher.classifier.weight.copy_(teacher.classifier.weight[order])
                teacher.classifier.bias.copy_(teacher.classifier.bias[order])
            teacher.class_order = order
            print(f"teacher: {folder}/config.json orders its classes {', '.join(names)}: "
                  f"reordered to {task.name}'s {', '.join(task.labels)}")
    teacher.config.id2label = dict(enumerate(task.labels))
