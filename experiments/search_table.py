"""Do the searches' proxies rank the subsets as whole runs do? (issue 27, part 2)

    python experiments/search_table.py runs/fresh/TASK experiments/logs/subsets/TASK

Reads the search runs (run.py --method halving, knockout or episode-ac, log.jsonl's "search" lines: every proxy run's
subset, rung and score on the reward split) of the first folder, finished or not, and the whole runs of
every fixed subset (experiments/subsets.sh, made with --holdout) of the second. Prints, per search and
rung, Spearman's rho over the rung's subsets between the proxy scores (mean over seeds) and the whole runs'
held-out and dev means; each seed's winner and the whole-run dev score of that subset; and, for finished
runs, the search's own dev score and cost (CPU seconds where logged) against the control (subset-1111)
paired by seed, the control's run taken from the first folder where it is there (experiments/fresh_seeds.sh
puts both in one folder), else from the second. The whole-run means are over the second folder's seeds,
which need not be the search's: the ranking of the subsets is the task's. The issue's bar: rho at least
0.6 on the first rung. Where the second folder has whole runs on the search's own seeds (part 1's seeds,
experiments/search_score.sh), a last table chooses --search-score: each seed's best proxy by either score
and its whole run.
"""
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kd_table import load, paired_test, signed  # noqa: E402
from kd_ref.data.metrics import spearman  # noqa: E402
from kd_ref.selectors import SEARCHES, rank_key  # noqa: E402

CONTROL = "subset-1111"


def search_lines(run_dir: Path) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if r.get("event") == "search"]


def cost_of(run: dict, control: dict) -> float:
    """A run's cost against the control's: the ratio of their CPU seconds (runs sharing the machine do not
    inflate them) where both logged them for the whole run, else of their wall times. A run resumed from a
    checkpoint that carried no CPU seconds (made before 2026-12-03) logged only its last process's."""
    def whole_cpu(m):
        resumed = m.get("resumed_from")
        return m.get("cpu_s") if not resumed or "cpu_s" in resumed.get("times", {}) else None
    if whole_cpu(run) and whole_cpu(control):
        return whole_cpu(run) / whole_cpu(control)
    return sum(run["wall_s"].values()) / sum(control["wall_s"].values())


def search_table(folder: Path, subsets: Path) -> list[str]:
    beside = [m for m, _ in load(folder)]
    whole = [m for m, _ in load(subsets) if m["method"].startswith("subset-")]
    searched = {method: {int(d.name.rsplit("-s", 1)[1]): lines for d in sorted(folder.glob(f"{method}-s*"))
                         if (d / "log.jsonl").exists() and (lines := search_lines(d))} for method in SEARCHES}
    if not any(searched.values()) or not whole:
        raise SystemExit(f"search_table.py: needs search runs in {folder} and subset runs in {subsets}")
    out = []
    for method, search in searched.items():
        if search:
            out += method_table(method, search, beside, whole)
    return out


def method_table(method: str, search: dict, beside: list, whole: list) -> list[str]:
    """One search's tables: search {seed: its search lines}; beside, the finished runs of its folder."""
    runs = {m["seed"]: m for m in beside if m["method"] == method}
    main = whole[0]["main_metric"]
    whole_mean = {split: {s: statistics.mean(m[split][main] for m in whole if m["method"] == s)
                          for s in {m["method"] for m in whole}} for split in ("holdout", "dev")}
    out = [f"### {whole[0]['task']}: {method}'s proxies against whole runs ({main}; {method} seeds "
           f"{','.join(map(str, sorted(search)))}; whole runs: {len(whole)})", "",
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

        def rho(key, sign, split):  # over the rung's subsets that have whole runs (part 1 may be unfinished)
            known = [s for s in names if s in whole_mean[split]]
            proxy = [sign * statistics.mean(r[key] for r in proxies[s]) for s in known]
            return f"{spearman(proxy, [whole_mean[split][s] for s in known]):.2f}" if len(known) > 2 else "-"
        out.append(f"| {rung} | {len(names)} | {share:.3f} | {rho(main, 1, 'holdout')} | {rho(main, 1, 'dev')} | "
                   f"{rho('loss', -1, 'holdout')}, {rho('loss', -1, 'dev')} |")
    control = {m["seed"]: m for m in whole + beside if m["method"] == CONTROL}  # the first folder's last: it wins
    out += ["", f"| seed | winner | winner's whole-run dev {main} (mean) | {method} dev {main} | control dev {main} | "
            f"{method} / control cost (CPU s, else wall) |", "|---|---|---|---|---|---|"]
    diffs, costs = [], []
    for seed, lines in sorted(search.items()):
        winner = "subset-" + lines[-1]["winner"] if "winner" in lines[-1] else "(searching)"
        c, run = control.get(seed), runs.get(seed)
        cost = cost_of(run, c) if c and run else None
        if c and run:
            diffs.append(run["dev"][main] - c["dev"][main])
            costs.append(cost)
        cells = ["" if m is None else f"{100 * m['dev'][main]:.2f}" for m in (run, c)]
        out.append(f"| {seed} | {winner} | {100 * whole_mean['dev'].get(winner, float('nan')):.2f} | {cells[0]} | "
                   f"{cells[1]} | {'' if cost is None else f'{cost:.2f}x'} |")
    if diffs:
        out += ["", f"{method} against the control, paired by seed: {signed(diffs)}, {paired_test(diffs)}; "
                f"cost {statistics.mean(costs):.2f}x the control's (mean)."]
    return out + [""] + score_choice(method, search, whole, main)


def score_choice(method: str, search: dict, whole: list, main: str) -> list[str]:
    """--search-score chosen where the whole runs share the search's seeds (experiments/search_score.sh,
    part 1's seeds): per seed, the last rung's best proxy by the metric and by minus the gold loss (ties as
    the selector breaks them: min keeps the earlier of equals, as its stable sort does), each with its whole run's held-out and dev score on that seed, and Spearman's
    rho over the rung between each score and the same seed's whole-run held-out scores. Earlier rungs (halving)
    were decided by the score the search ran with."""
    same = {(m["seed"], m["method"]): m for m in whole}
    rows, picked = [], {"metric": [], "loss": []}
    for seed, lines in sorted(search.items()):
        if "winner" not in lines[-1]:
            continue
        last = [r for r in lines if r["rung"] == lines[-1]["rung"]]
        runs = [same.get((seed, "subset-" + r["subset"])) for r in last]
        if None in runs:
            continue
        by = {"metric": min(range(len(last)), key=lambda i: rank_key(last[i][main], last[i]["loss"])),
              "loss": min(range(len(last)), key=lambda i: rank_key(-last[i]["loss"], last[i]["loss"]))}
        held = [m["holdout"][main] for m in runs]
        cells = []
        for score, i in by.items():
            picked[score].append(held[i])
            cells.append(f"{last[i]['subset']} | {100 * held[i]:.2f} | {100 * runs[i]['dev'][main]:.2f}")
        rhos = [spearman([r[main] for r in last], held), spearman([-r["loss"] for r in last], held)] if len(last) > 2 else []
        rows.append(f"| {seed} | {' | '.join(cells)} | " + ", ".join(f"{x:.2f}" for x in rhos) + " |")
    if not rows:
        return []
    return ([f"#### {method}: the score to rank by (--search-score), on seeds the whole runs share", "",
             f"| seed | best by {main} | its whole-run held-out | dev | best by gold loss | its whole-run held-out | "
             f"dev | rho with the seed's whole-run held-out ({main}, loss) |", "|---|---|---|---|---|---|---|---|"]
            + rows + ["", f"The winners' whole-run held-out {main}, mean over {len(rows)} seeds: by {main} "
                      f"{100 * statistics.mean(picked['metric']):.2f}, by gold loss {100 * statistics.mean(picked['loss']):.2f}.",
                      ""])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    print("\n".join(search_table(Path(sys.argv[1]), Path(sys.argv[2]))))
