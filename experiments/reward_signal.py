"""Does the KSM's reward carry its action? Measured from the logs of finished KSM runs.

    python experiments/reward_signal.py experiments/logs/study/mrpc experiments/logs/select/mrpc-resk

The agent can only learn a preference the reward shows. For each folder, over the episode
phases of its finished ksm-soft and ksm-hard runs (log.jsonl: the applied action and
`reward_task`, the drop of the gold loss over the phase), and separately over the final-run
phases of its random-soft and random-hard runs (weights drawn at random, phases of the full
data, 5 to 7 times as long as an episode's, on the reward split that a final run also trains
on), the task reward is made relative to the mean of its phase index over those runs (the
agent's own baseline, --reward-baseline phase: what the clock gives whatever the action). Then,
per knowledge (FinK, ResK, FeaK, RelK), Welch's t of that reward between phases that applied
the knowledge (weight > 0.5) and phases that did not; and the share of the reward's variance a
linear model of the four weights predicts on a run it was not fitted to (held-out R^2, leave
one run out; 0 or less: no better than the phase baseline alone). |t| near 2 or more across
seeds is a signal the critic can find; a held-out R^2 near 0 says how little of each single
reward it explains.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kd_ref.plumbing.report import read_phase_records  # noqa: E402

KNOWLEDGE = ("FinK", "ResK", "FeaK", "RelK")
# which phases are read: (label, run folders, the `run` of their log records)
SOURCES = (("KSM episodes", "ksm-*-s*", "episode"), ("random final runs", "random-*-s*", "final"))


def phases(log: Path, run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(phase index [N], applied action [N, 4], task reward [N]) of a run's `run` phases."""
    rows = [r for r in read_phase_records(log) if r["run"] == run and "reward_task" in r]
    return (np.array([r["phase"] for r in rows]), np.array([r["action"] for r in rows], dtype=float),
            np.array([r["reward_task"] for r in rows]))


def relative(phase: np.ndarray, reward: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """The reward minus the mean reward of its phase index over the `fitted` transitions."""
    out = np.empty_like(reward)
    for p in np.unique(phase):
        out[phase == p] = reward[phase == p] - reward[fitted & (phase == p)].mean()
    return out


def welch_t(on: np.ndarray, off: np.ndarray) -> float:
    spread = np.sqrt(on.var(ddof=1) / len(on) + off.var(ddof=1) / len(off)) if min(len(on), len(off)) > 1 else 0.0
    return (on.mean() - off.mean()) / spread if spread > 0 else float("nan")  # nan: too few phases to tell


def heldout_r2(run: np.ndarray, phase: np.ndarray, action: np.ndarray, reward: np.ndarray, ridge=1.0) -> float:
    """Leave one run out: phase baselines and a ridge fit of reward on [1, action] from the other runs."""
    residual = total = 0.0
    x = np.c_[np.ones(len(action)), action]
    penalty = ridge * np.diag([0.0] + [1.0] * action.shape[1])  # the intercept is not shrunk
    for held in np.unique(run):
        test, fit = run == held, run != held
        y = relative(phase, reward, fit)
        w = np.linalg.solve(x[fit].T @ x[fit] + penalty, x[fit].T @ y[fit])
        residual += ((y[test] - x[test] @ w) ** 2).sum()
        total += (y[test] ** 2).sum()
    return 1.0 - residual / total


def signal(folder: Path, source=SOURCES[0]) -> str:
    label, runs, run = source
    finished = sorted(m.parent / "log.jsonl" for m in folder.glob(f"{runs}/metrics.json"))  # as kd_table reads
    parts = [p for p in (phases(log, run) for log in finished) if len(p[0])]
    if not parts:
        return f"| {folder} | {label} | 0 | " + " | ".join([""] * (len(KNOWLEDGE) + 1)) + " |"
    run = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)])  # which run each phase is of
    phase, action, reward = (np.concatenate(x) for x in zip(*parts))
    y = relative(phase, reward, np.ones(len(reward), bool))
    ts = [welch_t(y[action[:, k] > 0.5], y[action[:, k] <= 0.5]) for k in range(len(KNOWLEDGE))]
    r2 = heldout_r2(run, phase, action, reward) if len(parts) > 1 else float("nan")
    return (f"| {folder} | {label} | {len(parts)} runs, {len(y)} phases | " + " | ".join(f"{t:+.1f}" for t in ts)
            + f" | {r2:+.2f} |")


if __name__ == "__main__":
    print("| runs | phases of | how many | " + " | ".join(f"t {k} on - off" for k in KNOWLEDGE)
          + " | held-out R^2 |")
    print("|---" * (len(KNOWLEDGE) + 4) + "|")
    for folder in sys.argv[1:]:
        for source in SOURCES:
            if any(Path(folder).glob(source[1])):
                print(signal(Path(folder), source))
