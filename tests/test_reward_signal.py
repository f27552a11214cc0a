"""experiments/reward_signal.py: does the KSM's reward carry its action? On logs written here by hand."""
import json
import runpy
from pathlib import Path

import numpy as np

module = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "reward_signal.py"))


def fake_runs(folder: Path, resk_effect: float, method="ksm-soft", run="episode", seeds=(1, 2, 3)):
    """Episodes of 12 phases whose reward is a clock term (the phase index), ResK's effect, and noise."""
    rng = np.random.default_rng(0)
    for seed in seeds:
        rows = []
        for episode in range(4):
            for phase in range(12):
                action = rng.uniform(0, 1, 4).tolist()
                reward = 1.0 - 0.1 * phase + resk_effect * action[1] + 0.1 * rng.standard_normal()
                rows.append({"event": "phase", "run": run, "episode": episode, "phase": phase, "action": action,
                             "reward_task": reward})
        other = "final" if run == "episode" else "episode"  # phases of the other kind, not to be read
        rows.append({"event": "phase", "run": other, "episode": 0, "phase": 0, "action": [1.0] * 4,
                     "reward_task": 9.0})
        (folder / f"{method}-s{seed}").mkdir(parents=True)
        (folder / f"{method}-s{seed}" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / f"{method}-s{seed}" / "metrics.json").write_text("{}")


def cells(row: str) -> list[str]:
    return row.strip("| ").split(" | ")


def test_a_knowledge_that_lowers_the_reward_shows_and_is_predicted(tmp_path):
    fake_runs(tmp_path, resk_effect=-0.5)
    row = cells(module["signal"](tmp_path))
    assert row[1:3] == ["KSM episodes", "3 runs, 144 phases"]  # the other run's phases are not counted
    t = [float(c) for c in row[3:7]]
    assert t[1] < -8 and all(abs(x) < 3 for x in (t[0], t[2], t[3])), t
    assert float(row[7]) > 0.5  # the clock is taken out by the phase baseline; ResK explains most of the rest


def test_a_reward_without_the_action_shows_nothing(tmp_path):
    fake_runs(tmp_path, resk_effect=0.0)
    row = cells(module["signal"](tmp_path))
    assert all(abs(float(c)) < 3 for c in row[3:7]) and float(row[7]) < 0.05, row


def test_unfinished_runs_are_left_out(tmp_path):
    fake_runs(tmp_path, resk_effect=-0.5)
    (tmp_path / "ksm-soft-s3" / "metrics.json").unlink()
    assert cells(module["signal"](tmp_path))[2] == "2 runs, 96 phases"


def test_random_runs_are_read_from_their_final_runs(tmp_path):
    fake_runs(tmp_path, resk_effect=-0.5, method="random-hard", run="final", seeds=(1, 2))
    random = module["SOURCES"][1]
    row = cells(module["signal"](tmp_path, random))
    assert row[1:3] == ["random final runs", "2 runs, 96 phases"] and float(row[4]) < -5, row
    assert cells(module["signal"](tmp_path))[2] == "0"  # no KSM runs here


def test_a_folder_without_ksm_runs_says_so(tmp_path):
    assert cells(module["signal"](tmp_path))[1:3] == ["KSM episodes", "0"]
