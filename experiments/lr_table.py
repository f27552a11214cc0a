"""The student learning-rate search of experiments/teachers.sh as one table: the dev main metric of the
finetune student, seed 1, per task and learning rate, read from <folder>/<task>-<rate>/finetune-s1/.

    python experiments/lr_table.py experiments/logs/study-lr

The best rate of each task is marked; experiments/recipe.sh's STUDENT_LR holds it.
"""
import json
import sys
from pathlib import Path


def lr_table(folder: Path) -> list[str]:
    scores = {}  # task -> {rate: main metric}
    teacher, names = {}, {}
    for metrics_file in sorted(folder.glob("*-*/finetune-s1/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        task, _, rate = metrics_file.parent.parent.name.partition("-")  # task names hold no "-"
        scores.setdefault(task, {})[float(rate)] = metrics["dev"][metrics["main_metric"]]
        names[float(rate)] = rate  # as the folder spells it, 5e-5
        teacher[task] = f"{metrics['main_metric']} {100 * metrics['teacher_dev'][metrics['main_metric']]:.2f}"
    rates = sorted({rate for by_rate in scores.values() for rate in by_rate})
    out = ["| task (teacher) | " + " | ".join(names[r] for r in rates) + " | best |", "|---" * (len(rates) + 2) + "|"]
    for task, by_rate in scores.items():
        best = max(by_rate, key=by_rate.get)
        cells = [("**{:.2f}**" if r == best else "{:.2f}").format(100 * by_rate[r]) if r in by_rate else ""
                 for r in rates]
        out.append(f"| {task} ({teacher[task]}) | " + " | ".join(cells) + f" | {names[best]} |")
    return out


if __name__ == "__main__":
    print("\n".join(lr_table(Path(sys.argv[1]))))
