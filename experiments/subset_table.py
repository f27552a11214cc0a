"""The headroom table (experiments/subsets.sh): fixed knowledge subsets, chosen on held-out rows of train,
reported on dev.

    python experiments/subset_table.py experiments/logs/subsets/mrpc [experiments/logs/subsets/cola ...]

Reads the finished runs (metrics.json, config.json) of fixed subsets made with --holdout and prints,
per task, each subset's main metric as mean ± sd over seeds on the held-out rows and on dev, and its
dev difference from the control (subset-1111, all four knowledges with the selectors' normalisation)
paired by seed. Then the honest choice: the subset with the best mean held-out score, reported on
dev (nothing looked at dev to choose it) against the control; the choice made per seed instead (each
seed's best whole run on held-out: the ceiling of a selector that chooses per seed from held-out rows);
the best subset on dev, for reference only (chosen on the numbers it is judged by); and how far held-out means rank the subsets as dev
means do (Spearman's rho over subsets), and where the runs logged it (since issue 27) how the held-out
gold loss ranks them, at the end and at every phase end of the final runs (a truncated run, ranked as
dev ranks the whole runs: the signal a cheap selector could read). Last, what each knowledge adds: the difference between
subsets that differ in that knowledge alone (on − off), over every such pair and seed, on held-out
and dev, and how many of those differences are positive. Only the seeds every subset has finished
count, so every subset is judged on the same seeds.
"""
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kd_ref.data.metrics import spearman  # noqa: E402  (ties share their average rank)
from kd_ref.plumbing.report import read_phase_records  # noqa: E402
from kd_table import load, mean_std, signed  # noqa: E402

CONTROL = "subset-1111"
KNOWLEDGE = ("FinK", "ResK", "FeaK", "RelK")


def differences(a: dict[int, float], b: dict[int, float]) -> list[float]:
    return [a[s] - b[s] for s in sorted(a)]


def paired(a: dict[int, float], b: dict[int, float]) -> str:
    """a - b paired by seed."""
    return signed(differences(a, b))


def with_digit(subset: str, k: int, digit: str) -> str:
    """subset-XXXX with its k-th knowledge's digit set to `digit`."""
    i = len("subset-") + k
    return subset[:i] + digit + subset[i + 1:]


def spans(folder: Path, subsets: list[str], seeds: list[int], main: str, dev_means: list[float]) -> list[str]:
    """Spearman's rho over subsets of the dev means of whole runs against the scores after each phase of
    the final runs (means over seeds): dev's own, and where every run logged them (since issue 27) the
    held-out metric and minus the held-out gold loss. A truncated run is what a cheap proxy could see."""
    finals = {(s, seed): [r for r in read_phase_records(folder / f"{s}-s{seed}" / "log.jsonl") if r["run"] == "final"]
              for s in subsets for seed in seeds}
    # the phases that were scored (run.py --curve-every)
    logs = {k: [r for r in rows if "dev" in r] for k, rows in finals.items()}
    n = min(len(rows) for rows in logs.values())
    held = n and all("holdout" in rows[0] for rows in logs.values())
    at = lambda p, split, key: [statistics.mean(logs[s, seed][p][split][key] for seed in seeds) for s in subsets]
    out = [f"| after phase | of | rho, dev {main} |" + (f" rho, held-out {main} | rho, held-out −loss |" if held else ""),
           "|---|---|---|" + ("---|---|" if held else "")]
    first = next(iter(logs))
    for p in range(n):
        phase = logs[first][p]["phase"] + 1
        cells = f"| {phase} | {len(finals[first])} | {spearman(at(p, 'dev', main), dev_means):.2f} |"
        if held:
            cells += (f" {spearman(at(p, 'holdout', main), dev_means):.2f} | "
                      f"{spearman([-v for v in at(p, 'holdout', 'loss')], dev_means):.2f} |")
        out.append(cells)
    return ["", "Truncated runs: how the final runs' scores after each phase rank the subsets against the dev "
            "means of the whole runs.", ""] + out


def per_seed_choice(score: dict, subsets: list[str], seeds: list[int], by: dict[str, dict[int, float]]) -> str:
    """On each seed the subset with the highest `by` (a held-out score; ties to the earlier subset, the
    control first), and its dev score against the control's on that seed."""
    chosen = {seed: max(subsets, key=lambda s: by[s][seed]) for seed in seeds}
    gains = [score[chosen[seed], "dev"][seed] - score[CONTROL, "dev"][seed] for seed in seeds]
    picks = ", ".join(f"{seed}: {chosen[seed][len('subset-'):]}" for seed in seeds)
    return f"{picks}; on dev against the control {signed(gains)}."


def task_table(folder: Path) -> list[str]:
    runs = [m for m, c in load(folder) if m["method"].startswith("subset-")]
    if not runs or any("holdout" not in m for m in runs):
        raise SystemExit(f"subset_table.py: {folder}: needs finished subset-XXXX runs made with --holdout")
    main, first = runs[0]["main_metric"], runs[0]
    subsets = sorted({m["method"] for m in runs}, reverse=True)  # subset-1111 (the control) first
    seeds = sorted(set.intersection(*({m["seed"] for m in runs if m["method"] == s} for s in subsets)))
    if CONTROL not in subsets or not seeds:
        raise SystemExit(f"subset_table.py: {folder}: needs {CONTROL} and a seed every subset has finished")
    score = {(m["method"], split): {} for m in runs for split in ("holdout", "dev")}
    for m in runs:
        if m["seed"] in seeds:
            for split in ("holdout", "dev"):
                score[m["method"], split][m["seed"]] = m[split][main]
    mean = lambda s, split: statistics.mean(score[s, split].values())
    losses = {m["method"]: {} for m in runs}  # seed -> the held-out gold loss, logged since issue 27
    for m in runs:
        if m["seed"] in seeds and "loss" in m["holdout"]:
            losses[m["method"]][m["seed"]] = m["holdout"]["loss"]
    with_loss = all(len(losses[s]) == len(seeds) for s in subsets)
    out = [f"### {first['task']} ({main}; held-out: {first['holdout_rows']} rows of train; seeds "
           f"{','.join(map(str, seeds))})", "",
           f"| subset | {' '.join(KNOWLEDGE)} | held-out {main} |{' held-out loss |' if with_loss else ''} "
           f"dev {main} | dev vs control |", "|---|---|---|---|---|" + ("---|" if with_loss else "")]
    for s in subsets:
        digits = " ".join(s[len("subset-"):])
        against = "" if s == CONTROL else paired(score[s, "dev"], score[CONTROL, "dev"])
        loss = f" {mean_std(list(losses[s].values()), scale=1.0, digits=4)} |" if with_loss else ""
        out.append(f"| {s} | {digits} | {mean_std(list(score[s, 'holdout'].values()))} |{loss} "
                   f"{mean_std(list(score[s, 'dev'].values()))} | {against} |")
    chosen = max(subsets, key=lambda s: mean(s, "holdout"))
    best_dev = max(subsets, key=lambda s: mean(s, "dev"))
    dev_means = [mean(s, "dev") for s in subsets]
    rho = spearman([mean(s, "holdout") for s in subsets], dev_means)
    rho_loss = (f" By minus the held-out gold loss instead: {spearman([-statistics.mean(losses[s].values()) for s in subsets], dev_means):.2f}."
                if with_loss else "")
    verdict = ("it is the control" if chosen == CONTROL else
               f"on dev against the control: {paired(score[chosen, 'dev'], score[CONTROL, 'dev'])}")
    per_seed = per_seed_choice(score, subsets, seeds, {s: score[s, "holdout"] for s in subsets})
    if with_loss:
        minus_loss = {s: {seed: -v for seed, v in losses[s].items()} for s in subsets}
        per_seed += " By minus the held-out gold loss: " + per_seed_choice(score, subsets, seeds, minus_loss)
    out += ["", f"Chosen on held-out: **{chosen}**; {verdict}. Best on dev (for reference, chosen on the "
            f"scores it is judged by): {best_dev}. Spearman's rho of held-out and dev means over the "
            f"{len(subsets)} subsets: {rho:.2f}.{rho_loss}", "",
            "Chosen per seed on held-out (each seed's best subset by its whole run's held-out score: the most a "
            f"selector that chooses per seed could see, at {len(subsets)}x a run's cost): {per_seed}",
            *spans(folder, subsets, seeds, main, dev_means), "",
            f"| knowledge | subset pairs | held-out {main}, on − off | dev {main}, on − off |", "|---|---|---|---|"]
    for k, name in enumerate(KNOWLEDGE):
        pairs = [(s, with_digit(s, k, "0")) for s in subsets if with_digit(s, k, "1") == s]
        pairs = [(on, off) for on, off in pairs if off in subsets]
        cells = []
        for split in ("holdout", "dev"):
            diffs = [d for on, off in pairs for d in differences(score[on, split], score[off, split])]
            cells.append(signed(diffs, "positive") if diffs else "")
        out.append(f"| {name} | {len(pairs)} | {cells[0]} | {cells[1]} |")
    return out + [""]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    print("\n".join(line for folder in sys.argv[1:] for line in task_table(Path(folder))))
