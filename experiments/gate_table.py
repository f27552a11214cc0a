"""What knockout-gate's rule chooses from knockout's proxy runs, at several minimum leads (issue 27).

    python experiments/gate_table.py experiments/logs/fresh/mrpc experiments/logs/fresh/cola
    python experiments/gate_table.py --seeds 11,12,13,14,15 experiments/logs/fresh/mrpc    # the test's seeds only

knockout and knockout-gate run the same five proxies, bit for bit: the gate changes only which one wins. So
from each finished knockout or knockout-gate run's search lines the table replays the rule: per minimum lead L
(the share of all's proxy's gold loss by which the winner's must be lower; L = 0 is knockout) and, where the run
logged the rows' paired z (knockout-gate), also with z at most -2, the subset each seed chooses and its dev
score: the control's (subset-1111 on the seed) where the rule keeps all, else that subset's run on the seed (a
search's final run that chose it, bit for bit the subset-XXXX run, or a subset-XXXX run in the folder; '?' where
none has run). Per rule and folder: the seeds that leave all, the gain over the control (mean ± sd, seeds ahead,
paired t and sign test) over the seeds whose choice has run. --seeds keeps those seeds only (the lead was
chosen on seeds 6-10, knockout-gate is tested on 11-15: the two never share a table).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kd_table import load, paired_test, signed  # noqa: E402
from search_table import CONTROL, search_lines  # noqa: E402
from kd_ref.selectors import gated_pick  # noqa: E402

LEADS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05)
Z = 2.0  # knockout-gate's --search-gate


def choice(proxies: list[dict], lead: float, z: bool) -> str:
    """The rule's winner among a run's five proxies (the first is all's, the reference): the selector's own."""
    scores = [(p["score"], p["loss"]) for p in proxies]
    return proxies[gated_pick(scores, lead, Z, [p["z_vs_all"] for p in proxies] if z else None)]["subset"]


def gate_table(folder: Path, only: set[int] | None = None) -> list[str]:
    runs = [m for m, _ in load(folder)]
    main = runs[0]["main_metric"]
    dev = {}  # (subset, seed) -> dev main metric of a run that trained that subset
    searches = {}  # seed -> the proxies of the seed's knockout(-gate) run
    for m in runs:
        if m["method"].startswith("subset-"):
            dev[m["method"].removeprefix("subset-"), m["seed"]] = m["dev"][main]
        elif m["method"] in ("knockout", "knockout-gate"):
            proxies = search_lines(folder / f"{m['method']}-s{m['seed']}")
            dev[proxies[-1]["winner"], m["seed"]] = m["dev"][main]
            searches.setdefault(m["seed"], proxies)
    seeds = sorted(s for s in searches if ("1111", s) in dev and (only is None or s in only))
    if not seeds:
        raise SystemExit(f"gate_table.py: {folder} has no finished knockout run beside the control's on its seed")
    with_z = all("z_vs_all" in p for s in seeds for p in searches[s])
    out = [f"### {runs[0]['task']} ({folder}): dev {main} against {CONTROL}, seeds {','.join(map(str, seeds))}", "",
           "| rule | choices by seed | seeds leaving all | gain over the control | test |", "|---|---|---|---|---|"]
    for z in (False, True) if with_z else (False,):
        for lead in LEADS:
            chosen = {s: choice(searches[s], lead, z) for s in seeds}
            diffs = [dev[chosen[s], s] - dev["1111", s] for s in seeds if (chosen[s], s) in dev]
            rule = f"lead >= {100 * lead:g}%" + (f", z <= -{Z:g}" if z else "")
            cells = ", ".join(f"{s}: {c}" + ("" if (c, s) in dev else " ?") for s, c in chosen.items())
            gain = f"{signed(diffs)} | {paired_test(diffs)}" if diffs else "no choice has run | -"
            out.append(f"| {rule} | {cells} | {sum(c != '1111' for c in chosen.values())} | {gain} |")
    return out + [""]


if __name__ == "__main__":
    args, only = sys.argv[1:], None
    if args[:1] == ["--seeds"] and len(args) > 1:
        only, args = {int(s) for s in args[1].split(",")}, args[2:]
    if not args:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    print("\n".join(line for folder in args for line in gate_table(Path(folder), only)))
