"""experiments/collect_runs.py: what of a run folder the repository keeps."""
import json
import runpy
from pathlib import Path

collect = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "collect_runs.py"))["collect"]


def test_finished_runs_and_searches_stopped_at_their_winner_are_kept_without_weights(tmp_path):
    src, dst = tmp_path / "runs", tmp_path / "logs"
    for name, files in {
        "kd-s1": {"config.json": "{}", "metrics.json": "{}", "log.jsonl": "", "student/model.safetensors": "w"},
        "kd-s2": {"config.json": "{}", "log.jsonl": "", "checkpoint/state.pt": "c"},  # under way: nothing kept
        "knockout-s3": {"config.json": "{}", "checkpoint/state.pt": "c",  # stopped in its final run
                        "log.jsonl": json.dumps({"event": "search", "subset": "0111", "winner": "0111"}) + "\n"},
    }.items():
        for path, text in files.items():
            (src / name / path).parent.mkdir(parents=True, exist_ok=True)
            (src / name / path).write_text(text)
    assert collect(src, dst) == ["kd-s1", "knockout-s3"]
    assert sorted(p.name for p in (dst / "kd-s1").iterdir()) == ["config.json", "log.jsonl", "metrics.json"]
    assert sorted(p.name for p in (dst / "knockout-s3").iterdir()) == ["config.json", "log.jsonl"]
    assert not (dst / "kd-s2").exists()
