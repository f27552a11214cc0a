"""What episode-ac would have chosen from knockout's proxy runs, without running it (issue 27, part 2).

    python experiments/replay_episode_ac.py experiments/logs/fresh/mrpc [more folders]

episode-ac's episodes are proxy runs paired exactly as knockout's (the same fraction of the rows at the same
--search-budget, the same start, batches and dropout masks), so an episode with one of knockout's five subsets is
that proxy run, bit for bit (tests/test_run.py checks the first). This replays episode-ac (kd_ref.selectors,
scored by minus the gold loss: --search-score loss) on each knockout run's logged proxies, seed by seed, as far as
it stays among them: its episodes, and its winner, or the first subset knockout did not run (marked ?), which only
a run of episode-ac can score.
"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kd_ref.selectors import EpisodeActorCritic  # noqa: E402


def replay(log: list[dict], seed: int, budget: float = 1.5) -> tuple[list[str], str | None]:
    """(episode-ac's subsets in order, each with its proxy's gold loss, or '?' where it left knockout's proxies;
    its winner, or None)."""
    proxies = {r["subset"]: r for r in log if r.get("event") == "search"}
    selector, path = EpisodeActorCritic("episode-ac", budget, seed), []
    for _ in range(selector.episodes(None)):
        subset = "".join(str(int(a)) for a in selector.act(torch.zeros(1), explore=True))
        if subset not in proxies:
            return path + [f"{subset} ?"], None
        record = selector.end_episode({"score": -proxies[subset]["loss"], "loss": proxies[subset]["loss"]})
        path.append(f"{subset} ({proxies[subset]['loss']:.4f})")
    return path, record["winner"]


def replay_table(folders: list[Path]) -> list[str]:
    out = ["| folder | seed | episode-ac's episodes (proxy gold loss) | its winner | knockout's (by loss) |",
           "|---|---|---|---|---|"]
    for folder in folders:
        for run in sorted(folder.glob("knockout-s*"), key=lambda d: int(d.name.rsplit("-s", 1)[1])):
            seed = int(run.name.rsplit("-s", 1)[1])
            log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
            proxies = [r for r in log if r.get("event") == "search"]
            path, winner = replay(log, seed)
            by_loss = min(proxies, key=lambda r: r["loss"])["subset"]
            out.append(f"| {folder} | {seed} | {', '.join(path)} | {winner or '-'} | {by_loss} |")
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("\n".join(replay_table([Path(f) for f in sys.argv[1:]])))
