"""Does halving's proxy rank the subsets as whole runs do? (issue 27, part 2)

    python experiments/halving_table.py experiments/logs/halving/TASK experiments/logs/subsets/TASK

Reads the halving runs (run.py --method halving, log.jsonl's "search" lines: every proxy run's subset,
rung and score on the reward split) of the first folder, and the whole runs of every fixed subset
(experiments/subsets.sh, made with --holdout) of the second. Prints, per rung, Spearman's rho over the
rung's subsets between the proxy scores (mean over seeds) and the whole runs' held-out and dev means;
each seed's winner and the whole-run dev score of that subset; and halving's own dev score and wall
time (CPU seconds where logged) against the control (subset-1111) paired by seed, the control's run taken
from the first folder where it is there (experiments/fresh_seeds.sh puts both in one folder), else from the
second. The whole-run means are over the second folder's seeds, which need not be halving's: the ranking of
the subsets is the task's. The issue's bar: rho at least 0.6 on rung 0.
"""
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kd_table import load, paired_test, signed  # noqa: E402
from subset_table import spearman  # noqa: E402

CONTROL = "subset-1111"


def search_lines(run_dir: Path) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if r.get("event") == "search"]


def spent(metrics: dict) -> float:
    """A run's cost: its CPU seconds where it logged them (runs sharing the machine do not inflate them),
    else its wall time."""
    return metrics.get("cpu_s") or sum(metrics["wall_s"].values())


def halving_table(halving: Path, subsets: Path) -> list[str]:
    beside = [m for m, _ in load(halving)]
    runs = {m["seed"]: m for m in beside if m["method"] == "halving"}
    whole = [m for m, _ in load(subsets) if m["method"].startswith("subset-")]
    if not runs or not whole:
        raise SystemExit(f"halving_table.py: needs finished halving runs in {halving} and subset runs in {subsets}")
    main = whole[0]["main_metric"]
    seeds = sorted(runs)
    whole_mean = {split: {s: statistics.mean(m[split][main] for m in whole if m["method"] == s)
                          for s in {m["method"] for m in whole}} for split in ("holdout", "dev")}
    search = {seed: search_lines(halving / f"halving-s{seed}") for seed in seeds}
    out = [f"### {whole[0]['task']}: halving's proxies against whole runs ({main}; halving seeds "
           f"{','.join(map(str, seeds))}; whole runs: {len(whole)})", "",
           "| rung | subsets | share of rows | rho with whole-run held-out means | rho with whole-run dev means | "
           "the same by minus the proxies' gold loss |", "|---|---|---|---|---|---|"]
    for rung in sorted({r["rung"] for lines in search.values() for r in lines}):
        proxies = {}  # subset -> this rung's proxy runs over the seeds where it reached the rung
        for lines in search.values():
            for r in lines:
                if r["rung"] == rung:
                    proxies.setdefault("subset-" + r["subset"], []).append(r)
        names = sorted(proxies)
        share = next(r["fraction"] for lines in search.values() for r in lines if r["rung"] == rung)

        def rho(key, sign, split):
            proxy = [sign * statistics.mean(r[key] for r in proxies[s]) for s in names]
            return f"{spearman(proxy, [whole_mean[split][s] for s in names]):.2f}" if len(names) > 2 else "-"
        out.append(f"| {rung} | {len(names)} | {share:.3f} | {rho(main, 1, 'holdout')} | {rho(main, 1, 'dev')} | "
                   f"{rho('loss', -1, 'holdout')}, {rho('loss', -1, 'dev')} |")
    control = {m["seed"]: m for m in whole + beside if m["method"] == CONTROL}  # the first folder's last: it wins
    out += ["", f"| seed | winner | winner's whole-run dev {main} (mean) | halving dev {main} | control dev {main} | "
            "halving / control cost (CPU s, else wall) |", "|---|---|---|---|---|---|"]
    diffs, costs = [], []
    for seed in seeds:
        winner = "subset-" + search[seed][-1]["winner"]
        c = control.get(seed)
        dev = runs[seed]["dev"][main]
        cost = spent(runs[seed]) / spent(c) if c else None
        if c:
            diffs.append(dev - c["dev"][main])
            costs.append(cost)
        control_dev = "" if c is None else f"{100 * c['dev'][main]:.2f}"
        out.append(f"| {seed} | {winner} | {100 * whole_mean['dev'].get(winner, float('nan')):.2f} | {100 * dev:.2f} | "
                   f"{control_dev} | {'' if cost is None else f'{cost:.2f}x'} |")
    if diffs:
        out += ["", f"halving against the control, paired by seed: {signed(diffs)}, {paired_test(diffs)}; "
                f"cost {statistics.mean(costs):.2f}x the control's (mean)."]
    return out + [""]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    print("\n".join(halving_table(Path(sys.argv[1]), Path(sys.argv[2]))))
