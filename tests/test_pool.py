"""kd_ref/pool.py: knockout-pool's choice from earlier runs' proxies, on run folders written by hand."""
import json
import math
from pathlib import Path

import pytest

from kd_ref.plumbing.errors import KdError
from kd_ref.pool import knockout_proxies, pool_choice, pooled_pick, pooled_runs, t_over_seeds

ARGS = {"task": "mrpc", "teacher": "t", "lr": 2e-4, "seed": 1, "method": "knockout"}
SKIP = {"seed", "method", "search_gate"}


def write_knockout(folder, seed, lead_0111, method="knockout", args=None, proxies=5):
    """A knockout run's config.json and the search lines of its proxies (no metrics.json, no dev: the pool
    reads neither): 0111's gold loss `lead_0111` below all's 0.6, the others above it."""
    run = folder / f"{method}-s{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"args": {**ARGS, "seed": seed, **(args or {})}}))
    losses = {"1111": 0.6, "0111": 0.6 * (1 - lead_0111), "1011": 0.62, "1101": 0.61, "1110": 0.605}
    lines = [{"event": "phase", "run": "episode"}] + [{"event": "search", "rung": 0, "subset": s, "loss": l}
                                                       for s, l in list(losses.items())[:proxies]]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def find(folders, seeds=None, args=None):
    return pooled_runs(folders, seeds, {**ARGS, "seed": 9, "method": "knockout-pool", **(args or {})}, SKIP, {})


def choose(folders, seeds=None, lead=0.02, gate=2.0, args=None):
    return pool_choice(find(folders, seeds, args)[0], lead, gate)


def test_pooled_pick_needs_a_mean_lead_and_a_t_over_the_seeds():
    """The largest mean lead among the candidates clear of both bars, else all (0)."""
    zeros = [0.0] * 4
    steady = [0.03, 0.04, 0.05, 0.04]  # mean 4%, t about 9.8
    erratic = [0.20, -0.10, 0.15, -0.05]  # mean 5%, t about 0.7: one seed's luck, not the task's
    small = [0.010, 0.012, 0.011, 0.013]  # t about 17 but a mean of 1.15%: below the lead
    assert pooled_pick([zeros, steady, erratic, small], 0.02, 2.0) == 1
    assert pooled_pick([zeros, erratic, small], 0.02, 2.0) == 0
    assert pooled_pick([zeros, erratic, small], 0.01, 2.0) == 2
    assert pooled_pick([zeros, steady, [0.06] * 4], 0.02, 2.0) == 2  # equal leads (sd 0) pass the gate
    assert t_over_seeds([0.01, 0.03]) == pytest.approx(2.0) and t_over_seeds([0.0, 0.0]) == 0.0
    assert t_over_seeds([-0.1, -0.1]) == -math.inf
    with pytest.raises(ValueError, match="1 seed"):
        pooled_pick([[0.0], [0.05]], 0.02, 2.0)


def test_the_pool_chooses_over_every_seed_found_and_records_its_evidence(tmp_path):
    for seed, lead in {1: 0.05, 2: 0.04, 3: 0.06}.items():
        write_knockout(tmp_path / "a", seed, lead, method="knockout-gate" if seed == 3 else "knockout")
    write_knockout(tmp_path / "b", 4, -0.03)
    write_knockout(tmp_path / "b", 5, 0.5, proxies=3)  # a rung cut short by a stop: no evidence
    record = choose([tmp_path / "a", tmp_path / "b"])
    assert record["seeds"] == [1, 2, 3, 4] and record["runs"][2].endswith("knockout-gate-s3")
    assert record["leads"]["0111"] == pytest.approx([0.05, 0.04, 0.06, -0.03])
    assert record["mean_lead"]["0111"] == pytest.approx(0.03) and record["t"]["0111"] == pytest.approx(1.4697, abs=1e-4)
    assert record["winner"] == "1111"  # a mean lead of 3% but t 1.47 over four seeds: all
    assert choose([tmp_path / "a", tmp_path / "b"], seeds=[1, 2, 3])["winner"] == "0111"  # t 8.7 over three
    assert choose([tmp_path / "a", tmp_path / "b"], gate=1.4)["winner"] == "0111"


@pytest.mark.parametrize("case, message", [
    ("one seed", r"1 seed\(s\) with knockout's five proxies; pooling needs two at least"),
    ("other flags", r"--pool-from: .*knockout-s2 was made with --lr 0.0001 \(this run has 0.0002\)"),
    ("no folder", r"0 seed\(s\) with knockout's five proxies"),
    ("no config", r"--pool-from: .*knockout-s2 has no config.json"),
    ("bad log", r"knockout-s2/log.jsonl:7: not a JSON object")])
def test_what_cannot_be_pooled_is_refused_naming_the_run_or_flag(tmp_path, case, message):
    write_knockout(tmp_path, 1, 0.05)
    if case != "one seed":
        write_knockout(tmp_path, 2, 0.05, args={"lr": 1e-4} if case == "other flags" else None)
    if case == "no config":
        (tmp_path / "knockout-s2" / "config.json").unlink()
    if case == "bad log":
        with open(tmp_path / "knockout-s2" / "log.jsonl", "a") as f:
            f.write('{"event": "phase", "run": "fi\n')  # a line cut off mid-write
    folders = [tmp_path / "nowhere"] if case == "no folder" else [tmp_path]
    with pytest.raises(KdError, match=message):
        choose(folders)
    # flags the proxies do not read may differ (SKIP: here the gate); the seed and method always do
    write_knockout(tmp_path / "ok", 1, 0.05, args={"search_gate": 3.0})
    write_knockout(tmp_path / "ok", 2, 0.05)
    assert choose([tmp_path / "ok"])["winner"] == "0111"


def test_seeds_no_run_has_are_returned_to_be_run_and_a_missing_folder_holds_none(tmp_path):
    write_knockout(tmp_path, 1, 0.05)
    write_knockout(tmp_path, 2, 0.04)
    pooled, missing = find([tmp_path / "nowhere", tmp_path], seeds=[2, 7])
    assert list(pooled) == [2] and missing == [7]
    pooled, missing = find([tmp_path])  # no --pool-seeds: every seed found, none missing
    assert list(pooled) == [1, 2] and missing == [] and pooled[1][0] == tmp_path / "knockout-s1"


def test_portings_worked_example_is_what_the_pool_computes_from_the_committed_logs():
    """PORTING.md's worked example (MRPC seeds 1-3, experiments/logs/score/mrpc): a port checks its rule
    against these numbers, so they must be what pool_choice gives from the logs they were read from."""
    logs = Path(__file__).resolve().parent.parent / "experiments/logs/score/mrpc"
    choice = pool_choice(knockout_proxies(logs), 0.02, 2.0)
    assert choice["seeds"] == [1, 2, 3] and choice["winner"] == "0111"
    assert choice["mean_lead"]["0111"] == pytest.approx(0.0402181, abs=1e-7)
    assert choice["t"]["0111"] == pytest.approx(3.3319, abs=1e-4)
