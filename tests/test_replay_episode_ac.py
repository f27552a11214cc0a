"""experiments/replay_episode_ac.py: episode-ac replayed on knockout's logged proxies, on logs written by hand."""
import json
import runpy
from pathlib import Path

from kd_ref.selectors import EpisodeActorCritic

module = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "replay_episode_ac.py"))


def knockout_log(losses: dict) -> list[dict]:
    return [{"event": "search", "subset": s, "rung": 0, "loss": loss} for s, loss in losses.items()]


def test_the_replay_follows_the_selector_and_stops_where_knockout_ran_no_proxy(tmp_path):
    order = EpisodeActorCritic("episode-ac", 1.5, 6).order  # seed 6 switches FeaK, ResK, RelK, then FinK
    assert order == [2, 1, 3, 0]
    # nothing beats all but FinK out: episode-ac runs knockout's five, in its seed's order, and picks 0111
    losses = {"1111": 0.60, "0111": 0.55, "1011": 0.70, "1101": 0.61, "1110": 0.62}
    path, winner = module["replay"](knockout_log(losses), seed=6)
    assert path == ["1111 (0.6000)", "1101 (0.6100)", "1011 (0.7000)", "1110 (0.6200)", "0111 (0.5500)"]
    assert winner == "0111"
    # FeaK out beats all first: the search goes on from 1101, to a subset knockout never ran
    losses["1101"] = 0.58
    path, winner = module["replay"](knockout_log(losses), seed=6)
    assert path[:2] == ["1111 (0.6000)", "1101 (0.5800)"] and path[2].endswith("?") and winner is None
    run = tmp_path / "knockout-s6"
    run.mkdir()
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in knockout_log(losses)))
    assert module["replay_table"]([tmp_path])[-1].endswith("| - | 0111 |")
