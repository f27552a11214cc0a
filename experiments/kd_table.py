"""The distillation results table (issue 3's evidence) from run.py output folders.

    python experiments/kd_table.py runs/mrpc runs/stsb runs/rte > /tmp/RESULTS-kd-part.md
    python experiments/kd_table.py experiments/logs/study/mrpc+experiments/logs/study-ema/mrpc   # one table from two folders
    python experiments/kd_table.py --summary experiments/logs/study/mrpc experiments/logs/study/stsb   # one table over the tasks

Reads every <folder>/<method>-s<seed>/metrics.json and config.json (finished runs only; an argument
FOLDER+FOLDER... makes one task's table of the runs in several folders) and prints, per task, the
teacher's dev score and, per method, the mean and sample standard deviation over seeds of each dev
metric and of the wall time, with the flags the runs were made with, and the knowledge weights
(FinK, ResK, FeaK, RelK) the final runs applied, averaged over their phases and seeds. Each method
is also compared with finetune, with all, with the task's best fixed baseline (of finetune, kd, pkd
and all, the highest mean main metric) and with its best random one (of random-soft and random-hard:
the selection the KSM must beat) on the main metric, paired by seed (same seed, same data order):
mean and sd of the per-seed difference, and on how many seeds the method came out ahead. "of
teacher" is the mean main metric as a percentage of the teacher's. A second table gives each seed's
main metric per method, the weights each KSM run applied in its final run (mean over phases), and
its critic's TD loss over the last episode: the agent's rewards are scaled to RMS 1, so a loss near
1 means the critic predicted none of them (the actor then climbs a flat Q). A claim about the seeds
can so be read off without the run folders. A run made with --loss-norm other than auto (the control
`all --loss-norm ema`, which normalises its losses as the selectors do) gets a row of its own, named
with the flag, and is no baseline. Nothing is run here: the commands are in the results file that
quotes these tables.
"""
import collections
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kd_ref.plumbing.report import read_phase_records  # noqa: E402

ORDER = ("finetune", "kd", "pkd", "all", "random-soft", "random-hard", "ksm-hard", "ksm-soft")
FIXED = ORDER[:4]  # the baselines whose knowledge weights do not change during training
RANDOM = ORDER[4:6]  # weights drawn at random each phase
SHOWN_FLAGS = ("teacher_seed", "student_layers", "epochs", "episodes", "phases_per_epoch", "lr", "batch_size",
               "max_len", "teacher_epochs", "teacher_lr", "reward_split", "loss_norm", "action_norm", "episode_fraction",
               "reward_fraction", "reward_baseline", "lr_actor", "critic_weight_decay", "corrupt")


def mean_std(values, scale=100.0, digits=2) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * std:.{digits}f}"


def final_weights(rows: list[dict]) -> list[float]:
    """Mean action of the final run's phases (what the student was distilled with)."""
    actions = [r["action"] for r in rows if r["run"] == "final"]
    return [statistics.mean(a[k] for a in actions) for k in range(len(actions[0]))]


def last_critic_loss(rows: list[dict]) -> float | None:
    """The critic's mean TD loss over the last episode's phases; None for a run without an agent."""
    episodes = [r for r in rows if r["run"] == "episode" and "critic_loss" in r]
    last = [r["critic_loss"] for r in episodes if r["episode"] == episodes[-1]["episode"]] if episodes else []
    return statistics.mean(last) if last else None


def flag_values(configs: list[dict], flag: str) -> str:
    """A flag's value, or each value with its count of runs where the runs were made differently (a run
    distilled from an already fine-tuned teacher folder keeps the default --teacher-* flags, for one)."""
    counts = collections.Counter(str(c["args"].get(flag, "(default)")) for c in configs)
    if len(counts) == 1:
        return next(iter(counts))
    return " or ".join(f"{value} ({n} runs)" for value, n in counts.most_common())


def versus(mine: list[dict], baseline: dict, main: str) -> str:
    """Per-seed difference from a baseline method's runs ({seed: main metric}), over the seeds both have."""
    diffs = [m["dev"][main] - baseline[m["seed"]] for m in mine if m["seed"] in baseline]
    if not diffs:
        return ""
    return signed(diffs)


def signed(diffs: list[float], ahead: str = "ahead") -> str:
    """Mean ± sd of differences, and on how many the first came out ahead ("3/4 ahead")."""
    return (f"{'+' if statistics.mean(diffs) >= 0 else ''}{mean_std(diffs)} "
            f"({sum(d > 0 for d in diffs)}/{len(diffs)} {ahead})")


def paired_test(diffs: list[float]) -> str:
    """The paired t statistic of differences (n - 1 degrees of freedom) and the two-sided sign test's
    p (ties dropped): the two tests the selection tables print beside mean ± sd."""
    n, mean = len(diffs), statistics.mean(diffs)
    if n < 2:
        return "one seed: no test"
    if not any(diffs):  # t would be 0 / 0
        return "equal on every seed: no test"
    sd = statistics.stdev(diffs)
    t = mean / (sd / math.sqrt(n)) if sd > 0 else math.copysign(math.inf, mean)
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    tail = sum(math.comb(wins + losses, i) for i in range(min(wins, losses) + 1)) / 2 ** (wins + losses)
    return f"t({n - 1}) = {t:.2f}, sign p = {min(1.0, 2 * tail):.2f}"


def label(metrics: dict, config: dict) -> str:
    """The row a run belongs to: its method, and --loss-norm where the run was not made with auto."""
    norm = config["args"].get("loss_norm", "auto")
    return metrics["method"] if norm == "auto" else f"{metrics['method']} --loss-norm {norm}"


def load(*folders: Path) -> list[tuple[dict, dict]]:
    """Every finished run in the folders: (metrics with its final weights, critic loss and row label, config)."""
    for folder in folders:  # a mistyped folder would otherwise pass as one with no runs yet
        if not folder.is_dir():
            raise SystemExit(f"kd_table.py: {folder}: no such folder")
    runs = []
    for metrics_file in sorted(f for folder in folders for f in folder.glob("*-s*/metrics.json")):
        config = json.loads((metrics_file.parent / "config.json").read_text())
        metrics = json.loads(metrics_file.read_text())
        rows = read_phase_records(metrics_file.parent / "log.jsonl")
        metrics["weights"], metrics["critic_loss"] = final_weights(rows), last_critic_loss(rows)
        metrics["label"] = label(metrics, config)
        runs.append((metrics, config))
    return runs


def row_key(row: str) -> tuple[int, str]:
    """Rows in ORDER; a control row (its method and a flag) after its method's; unknown methods last."""
    method = row.split(" ")[0]
    return ORDER.index(method) if method in ORDER else len(ORDER), row


def by_row(runs: list[tuple[dict, dict]], main: str) -> tuple[dict[str, list[dict]], str | None, str | None]:
    """The runs by row label, and the task's best fixed and best random method (highest mean main metric)."""
    by_method = {row: [m for m, _ in runs if m["label"] == row] for row in sorted({m["label"] for m, _ in runs}, key=row_key)}
    best_fixed, best_random = (max((m for m in by_method if m in group), default=None,
                                   key=lambda b: statistics.mean(m["dev"][main] for m in by_method[b]))
                               for group in (FIXED, RANDOM))
    return by_method, best_fixed, best_random


def seed_scores(by_method: dict[str, list[dict]], method: str | None, main: str) -> dict[int, float]:
    return {m["seed"]: m["dev"][main] for m in by_method.get(method, [])}


def table(*folders: Path) -> list[str]:
    runs = load(*folders)
    where = " + ".join(str(folder) for folder in folders)
    if not runs:
        return [f"{where}: no finished runs", ""]
    first = runs[0][0]
    keys = list(first["dev"])
    main = first["main_metric"]
    teacher = " / ".join(f"{k} {100 * first['teacher_dev'][k]:.2f}" for k in keys)
    flags = ", ".join(f"--{f.replace('_', '-')} {flag_values([c for _, c in runs], f)}" for f in SHOWN_FLAGS)
    by_method, best_fixed, best_random = by_row(runs, main)
    out = [f"### {first['task']} ({where})", "", f"Teacher dev: {teacher}. Flags: {flags}.", "",
           "| method | seeds | " + " | ".join(keys) + f" | of teacher | Δ {main} vs finetune, paired | Δ vs all, paired"
           f" | Δ vs best fixed ({best_fixed or 'none'}), paired | Δ vs best random ({best_random or 'none'}), paired"
           " | final weights Fin/Res/Fea/Rel | wall s per run |",
           "|---" * (len(keys) + 9) + "|"]
    compared = ("finetune", "all", best_fixed, best_random)
    baselines = {b: seed_scores(by_method, b, main) for b in compared}
    for method, mine in by_method.items():
        cells = [mean_std([m["dev"][k] for m in mine]) for k in keys]
        share = f"{100 * statistics.mean(m['dev'][main] for m in mine) / first['teacher_dev'][main]:.1f}%"
        wall = mean_std([sum(m["wall_s"].values()) for m in mine], scale=1.0, digits=0)
        weights = "/".join(f"{statistics.mean(m['weights'][k] for m in mine):.2f}"
                           for k in range(len(mine[0]["weights"])))
        seeds = ",".join(str(m["seed"]) for m in mine)
        versus_cells = [versus(mine, baselines[b], main) if method != b else "" for b in compared]
        out.append(f"| {method} | {seeds} | " + " | ".join(cells + [share] + versus_cells) + f" | {weights} | {wall} |")
    return out + [""] + per_seed(by_method, main)


def summary(*tasks: tuple[Path, ...]) -> list[str]:
    """One table over tasks (each a tuple of folders): per method the mean ± sd of the main metric and its
    number of seeds, then each KSM against its task's best fixed and best random method and its control
    (`all --loss-norm ema`, where run), paired by seed: the paper's claim, per task, in one table."""
    columns = []
    for folders in tasks:
        runs = load(*folders)
        if not runs:
            raise SystemExit(f"kd_table.py: {' + '.join(map(str, folders))}: no finished runs")
        first, main = runs[0][0], runs[0][0]["main_metric"]
        by_method, best_fixed, best_random = by_row(runs, main)
        control = next((row for row in by_method if " " in row), None)  # a method run with another flag
        columns.append({"head": f"{first['task']} {main}", "teacher": first["teacher_dev"][main], "main": main,
                        "runs": by_method, "best fixed": best_fixed, "best random": best_random, "control": control})
    out = ["| | " + " | ".join(c["head"] for c in columns) + " |", "|---" * (1 + len(columns)) + "|",
           "| teacher | " + " | ".join(f"{100 * c['teacher']:.2f}" for c in columns) + " |"]
    for row in sorted({row for c in columns for row in c["runs"]}, key=row_key):
        cells = [f"{mean_std([m['dev'][c['main']] for m in c['runs'][row]])} ({len(c['runs'][row])})"
                 if row in c["runs"] else "" for c in columns]
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    for ksm in ("ksm-soft", "ksm-hard"):
        for kind in ("best fixed", "best random", "control"):
            cells = [f"{versus(c['runs'][ksm], seed_scores(c['runs'], c[kind], c['main']), c['main'])} vs {c[kind]}"
                     if ksm in c["runs"] and c[kind] else "" for c in columns]
            if any(cells):
                out.append(f"| {ksm} − {kind}, paired | " + " | ".join(cells) + " |")
    return out + [""]


def per_seed(by_method: dict[str, list[dict]], main: str) -> list[str]:
    """Rows: seeds; cells: each method's main metric, then the KSM runs' final weights Fin/Res/Fea/Rel
    and critic TD loss in the last episode."""
    ksm = [method for method in by_method if method.startswith("ksm-")]
    seeds = sorted({m["seed"] for mine in by_method.values() for m in mine})
    heads = list(by_method) + [f"{k} weights" for k in ksm] + [f"{k} critic loss" for k in ksm]
    out = [f"Per seed, {main}:", "", "| seed | " + " | ".join(heads) + " |", "|---" * (1 + len(heads)) + "|"]
    for seed in seeds:
        runs = {method: next((m for m in mine if m["seed"] == seed), None) for method, mine in by_method.items()}
        cells = [f"{100 * m['dev'][main]:.2f}" if m else "" for m in runs.values()]
        cells += ["/".join(f"{w:.2f}" for w in runs[k]["weights"]) if runs[k] else "" for k in ksm]
        cells += [f"{runs[k]['critic_loss']:.2f}" if runs[k] and runs[k]["critic_loss"] is not None else ""
                  for k in ksm]
        out.append(f"| {seed} | " + " | ".join(cells) + " |")
    return out + [""]


if __name__ == "__main__":
    args = sys.argv[1:]
    tasks = [tuple(map(Path, arg.split("+"))) for arg in args if arg != "--summary"]
    lines = summary(*tasks) if "--summary" in args else [line for folders in tasks for line in table(*folders)]
    print("\n".join(lines))
