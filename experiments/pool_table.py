"""A choice made once for a task by pooling knockout's proxies over seeds (issue 27): how many seeds it needs.

    python experiments/pool_table.py experiments/logs/fresh/mrpc experiments/logs/score/mrpc experiments/logs/subsets/mrpc
    python experiments/pool_table.py experiments/logs/fresh/cola experiments/logs/subsets/cola
    python experiments/pool_table.py --pool 1,2,3,6,7,8,9,10 --test 11,12,13,14,15 experiments/logs/fresh/mrpc \
        experiments/logs/score/mrpc                                    # a registered test: one pool, other seeds

knockout-gate chooses per seed, and one seed's proxies are too noisy to choose by. This replays knockout-pool's
rule (kd_ref/pool.py) on every pool of K seeds: each leave-one-out subset's lead over all's proxy (the share by
which its gold loss on the reward rows is lower), pooled over K seeds; the subset with the largest mean lead
among those whose mean lead is at least 2% and whose t over the K seeds is at least 2 (knockout-gate's lead and
gate, run.py's defaults), else all.

Reads every run of the folders with knockout's proxies (knockout, knockout-gate; finished or not, their
log.jsonl's search lines) and every finished run's dev score (subset-XXXX, and a search's or knockout-pool's
final run under its winner's digits). Prints each proxy seed's leads and their pooled mean, sd and t; then per
pool size K, over every pool of K proxy seeds: how often each subset is chosen, and the chosen subset's dev gain
over the control (subset-1111) on the seeds outside the pool (held out from the choice; only seeds where the
chosen subset has run count, the others are reported as missing), as the mean over pools, with the share of
pools whose gain is above 0 and at least +0.3 (the issue's bar). With --pool and --test: the choice pooled over
those seeds, and its runs against the control's on the test seeds, paired by seed (mean ± sd, seeds ahead,
paired t and sign test).
"""
import itertools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kd_table import load, paired_test, signed  # noqa: E402
from search_table import search_lines  # noqa: E402
from kd_ref.pool import knockout_proxies, pooled_pick, t_over_seeds  # noqa: E402
from kd_ref.selectors import lead_over  # noqa: E402

LEAD, GATE = 0.02, 2.0  # knockout-gate's --search-lead and --search-gate
BAR = 0.3  # issue 27's minimum mean gain, in points of the main metric


def proxy_leads(folders: list[Path]) -> dict[int, dict[str, float]]:
    """seed -> {subset: lead over all's proxy} of each seed's knockout proxies, all's first (lead 0)."""
    leads = {}
    for folder in folders:
        for seed, (_, lines) in knockout_proxies(folder).items():
            leads.setdefault(seed, {p["subset"]: lead_over(p["loss"], lines[0]["loss"]) for p in lines})
    return leads


def pick(leads: dict[int, dict[str, float]], pool) -> str:
    """The subset knockout-pool's rule chooses from the proxies of the seeds in pool."""
    candidates = list(leads[pool[0]])
    return candidates[pooled_pick([[leads[s][c] for s in pool] for c in candidates], LEAD, GATE)]


def dev_scores(folders: list[Path]) -> tuple[dict[tuple[str, int], float], str]:
    """(subset, seed) -> dev main metric (points) of every finished run that trained that subset, and the metric."""
    runs = load(*folders)
    dev = {}
    for m, config in runs:
        subset = m["method"].removeprefix("subset-") if m["method"].startswith("subset-") else None
        if m["method"] == "knockout-pool":
            subset = config["pool"]["winner"]
        if m["method"] in ("knockout", "knockout-gate"):
            folder = next(f for f in folders if (f / f"{m['method']}-s{m['seed']}" / "metrics.json").exists())
            subset = search_lines(folder / f"{m['method']}-s{m['seed']}")[-1]["winner"]
        if subset:
            dev.setdefault((subset, m["seed"]), 100 * m["dev"][m["main_metric"]])
    return dev, runs[0][0]["main_metric"] if runs else "?"


def pool_table(folders: list[Path]) -> list[str]:
    leads = proxy_leads(folders)
    dev, main = dev_scores(folders)
    if len(leads) < 2:
        raise SystemExit(f"pool_table.py: {len(leads)} seed(s) with knockout's five proxies in "
                         f"{', '.join(map(str, folders))}; pooling needs two at least")
    seeds = sorted(leads)
    candidates = list(leads[seeds[0]])
    tested = sorted(s for (c, s) in dev if c == "1111")
    out = [f"### pooled knockout choice ({', '.join(map(str, folders))})", "",
           f"Proxy seeds {','.join(map(str, seeds))}; dev {main} of the control on seeds {','.join(map(str, tested))}.",
           "", "| seed | " + " | ".join(f"lead of {c}" for c in candidates[1:]) + " |",
           "|---|" + "---|" * (len(candidates) - 1)]
    out += [f"| {s} | " + " | ".join(f"{100 * leads[s][c]:+.2f}%" for c in candidates[1:]) + " |" for s in seeds]
    def summary(c):
        v = [100 * leads[s][c] for s in seeds]
        return f"{statistics.mean(v):+.2f} ± {statistics.stdev(v):.2f}%, t {t_over_seeds(v):.2f}"
    out += ["| all seeds | " + " | ".join(summary(c) for c in candidates[1:]) + " |", "",
            f"| K seeds pooled | pools | chosen (share of pools) | gain over the control on the other seeds, "
            f"mean over pools | pools with gain > 0 / >= +{BAR} | (pool, seed) pairs missing a run |",
            "|---|---|---|---|---|---|"]
    for k in range(2, len(seeds) + 1):
        counts, gains, missing, pairs = {}, [], 0, 0
        pools = list(itertools.combinations(seeds, k))
        for pool in pools:
            chosen = pick(leads, pool)
            counts[chosen] = counts.get(chosen, 0) + 1
            others = [s for s in tested if s not in pool]
            diffs = [dev[chosen, s] - dev["1111", s] for s in others if (chosen, s) in dev]
            missing, pairs = missing + len(others) - len(diffs), pairs + len(others)
            if diffs:
                gains.append(statistics.mean(diffs))
        shares = ", ".join(f"{c} {n / len(pools):.0%}" for c, n in sorted(counts.items(), key=lambda x: -x[1]))
        gain = (f"{statistics.mean(gains):+.2f} | {sum(g > 0 for g in gains) / len(gains):.0%} / "
                f"{sum(g >= BAR for g in gains) / len(gains):.0%}") if gains else "- | -"
        out.append(f"| {k} | {len(pools)} | {shares} | {gain} | {missing}/{pairs} |")
    return out + [""]


def pool_test(folders: list[Path], pool: list[int], test: list[int]) -> list[str]:
    """A registered test: the choice pooled over the seeds `pool`, against the control on the seeds `test`,
    paired by seed (the chosen subset's run on a seed: any run that trained it; '?' where none has)."""
    leads = proxy_leads(folders)
    dev, main = dev_scores(folders)
    missing = sorted(set(pool) - set(leads))
    if missing or set(pool) & set(test):
        raise SystemExit(f"pool_table.py: --pool {','.join(map(str, pool))}: "
                         + (f"no proxies for seed(s) {','.join(map(str, missing))}" if missing else "shares seeds with --test"))
    chosen = pick(leads, pool)
    out = [f"### knockout-pool's test ({', '.join(map(str, folders))}): pooled over seeds {','.join(map(str, pool))}, "
           f"chosen {chosen}; dev {main} against the control on seeds {','.join(map(str, test))}", "",
           "| seed | control | chosen | difference |", "|---|---|---|---|"]
    diffs = []
    for s in test:
        control, mine = dev.get(("1111", s)), dev.get((chosen, s))
        if control is None or mine is None:
            out.append(f"| {s} | {'?' if control is None else f'{control:.2f}'} | {'?' if mine is None else f'{mine:.2f}'} | ? |")
            continue
        diffs.append(mine - control)
        out.append(f"| {s} | {control:.2f} | {mine:.2f} | {diffs[-1]:+.2f} |")
    summary = f"{signed([d / 100 for d in diffs])}; {paired_test(diffs)}" if diffs else "no seed has both runs"
    return out + ["", f"Gain over the control: {summary}.", ""]


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--pool"] and len(args) > 4 and args[2] == "--test":
        seeds = lambda text: [int(s) for s in text.split(",")]
        print("\n".join(pool_test([Path(f) for f in args[4:]], seeds(args[1]), seeds(args[3]))))
    elif args and not args[0].startswith("--"):
        print("\n".join(pool_table([Path(f) for f in args])))
    else:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
