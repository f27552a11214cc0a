"""knockout-pool [ours, issue 27]: one choice of knowledge for a task, pooled over seeds.

knockout and knockout-gate choose per seed, from one seed's five proxy runs (`all`, and each knowledge left
out), and at our scale one seed's proxies disagree with the next seed's by more than the subsets differ:
knockout-gate kept `all` on MRPC's seeds 11-15, where 0111 is worth +0.56 F1 over seeds 6-15
(experiments/RESULTS-kd.md). So knockout-pool takes the seeds, not one seed's rows, as the unit of evidence.
It reads the proxies of knockout or knockout-gate runs of the same task, teacher and flags (run.py --pool-from,
and --out; their log.jsonl's search lines: each proxy's gold loss on held-out rows of train, never dev), runs
knockout-gate's proxies on the --pool-seeds that none has, takes each subset's lead over all's proxy on each
seed (selectors.lead_over), and trains the subset with the largest mean lead among those whose mean lead is at
least --search-lead and whose t over the seeds is at least --search-gate; else `all`. The choice is made once
for the task: every seed's run trains the same subset, subset-XXXX's run bit for bit.
"""
import json
import math
from pathlib import Path

import torch

from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.outputs import first_change, read_log
from kd_ref.selectors import lead_over

KNOCKOUT = ("knockout", "knockout-gate")  # the searches whose one rung of five proxies is pooled
N_PROXIES = 5


def t_over_seeds(values: list[float]) -> float:
    """The one-sample t of per-seed values: their mean over its standard error (+-inf where they are all
    equal and not 0, 0 where they are all 0)."""
    se = torch.tensor(values, dtype=torch.float64).std().item() / math.sqrt(len(values))
    mean = sum(values) / len(values)
    return mean / se if se > 0 else math.copysign(math.inf, mean) if mean else 0.0


def pooled_pick(leads: list[list[float]], lead: float, gate: float) -> int:
    """leads[i]: candidate i's lead over all's proxy on each pooled seed, candidate 0 being `all`. The
    candidate with the largest mean lead among those whose mean lead is at least `lead` and whose t over
    the seeds is at least `gate`; else 0, all. A t over seeds needs two seeds at least."""
    if len(leads[0]) < 2:
        raise ValueError(f"pooled_pick: {len(leads[0])} seed(s); a t over seeds needs two at least")
    means = [sum(v) / len(v) for v in leads]
    clear = [i for i in range(1, len(leads)) if means[i] >= lead and t_over_seeds(leads[i]) >= gate]
    return max(clear, key=lambda i: means[i], default=0)


def knockout_proxies(folder: Path) -> dict[int, tuple[Path, list[dict]]]:
    """seed -> (run folder, its five proxies' search lines, all's first) of every knockout or knockout-gate
    run in folder whose proxies all finished (its final run may not have: a rung cut short is left out).
    pool_choice takes a seed found in two folders from the first."""
    found = {}
    for run in sorted(folder.glob("knockout*-s*")):
        method, _, seed = run.name.rpartition("-s")
        if method not in KNOCKOUT or not seed.isdigit() or not (run / "log.jsonl").is_file():
            continue
        lines = [r for _, r in read_log(run / "log.jsonl") if isinstance(r, dict) and r.get("event") == "search"]
        if len(lines) == N_PROXIES and lines[0]["subset"] == "1111":
            found.setdefault(int(seed), (run, lines))
    return found


def pooled_runs(folders: list[Path], seeds: list[int] | None, args: dict, skip: set,
                defaults: dict) -> tuple[dict[int, tuple[Path, list[dict]]], list[int]]:
    """The runs to pool, seed -> (run folder, its proxies' search lines), and the seeds of `seeds` that no
    folder has (run.py runs their proxies); without `seeds`, every seed found. Each run must have been made
    with the flags in args but those in skip (a key its config.json lacks takes its value from defaults),
    else a one-line error names the run and the flag. A folder that does not exist holds no runs."""
    found = {}
    for folder in folders:
        for seed, run in (knockout_proxies(folder) if folder.is_dir() else {}).items():
            found.setdefault(seed, run)
    pooled = {seed: run for seed, run in sorted(found.items()) if seeds is None or seed in seeds}
    for run, _ in pooled.values():
        if not (run / "config.json").is_file():
            raise KdError(f"--pool-from: {run} has no config.json, so the flags its proxies were made with are unknown")
        change = first_change(json.loads((run / "config.json").read_text())["args"], args, skip=skip, defaults=defaults)
        if change:
            flag, old, now = change
            raise KdError(f"--pool-from: {run} was made with --{flag.replace('_', '-')} {old} (this run has {now}): "
                          "its proxies are another run's; pool runs made with this run's flags")
    return pooled, sorted(set(seeds or ()) - set(found))


def pool_choice(pooled: dict[int, tuple[Path, list[dict]]], lead: float, gate: float) -> dict:
    """The pooled choice, as the log line knockout-pool's runs start with: the runs pooled, each subset's
    lead per seed, its mean and t, and the winner."""
    if len(pooled) < 2:
        raise KdError(f"knockout-pool: {len(pooled)} seed(s) with knockout's five proxies; pooling needs two at least")
    proxies = [lines for _, lines in pooled.values()]
    subsets = [p["subset"] for p in proxies[0]]
    if any([p["subset"] for p in ps] != subsets for ps in proxies):
        raise KdError(f"--pool-from: the pooled runs' proxies are not the same five subsets ({subsets})")
    leads = [[lead_over(ps[i]["loss"], ps[0]["loss"]) for ps in proxies] for i in range(N_PROXIES)]
    return {"event": "pool", "runs": [str(run) for run, _ in pooled.values()], "seeds": list(pooled),
            "leads": {s: leads[i] for i, s in enumerate(subsets) if i},
            "mean_lead": {s: sum(leads[i]) / len(pooled) for i, s in enumerate(subsets) if i},
            "t": {s: t_over_seeds(leads[i]) for i, s in enumerate(subsets) if i},
            "lead": lead, "gate": gate, "winner": subsets[pooled_pick(leads, lead, gate)]}
