"""experiments/weights_svg.py, the picture of the weights the selecting methods chose: a panel per folder
and selecting method, a line per knowledge and seed plus the mean, on logs written here by hand."""
import json
import runpy
from pathlib import Path

import pytest

module = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "weights_svg.py"))


def fake_log(folder: Path, method: str, seed: int, actions: list[list[float]]):
    run = folder / f"{method}-s{seed}"
    run.mkdir(parents=True)
    rows = [{"event": "phase", "run": "episode", "phase": 0, "action": [9.0] * 4}]
    rows += [{"event": "phase", "run": "final", "phase": p, "action": a} for p, a in enumerate(actions)]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_one_panel_per_selecting_method_with_seed_lines_and_their_mean(tmp_path):
    task = tmp_path / "mrpc"
    fake_log(task, "ksm-soft", 1, [[1.0, 0.2, 0.5, 0.5], [1.0, 0.0, 0.5, 0.7]])
    fake_log(task, "ksm-soft", 2, [[1.0, 0.4, 0.5, 0.5], [1.0, 0.2, 0.5, 0.3]])
    fake_log(task, "ksm-hard", 1, [[1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]])
    fake_log(task, "all", 1, [[1.0] * 4, [1.0] * 4])  # a fixed method: no panel
    out = tmp_path / "w.svg"
    module["main"]([str(out), str(task)])
    svg = out.read_text()
    # the mean over seeds and phases, per knowledge, in the panel title (episode actions ignored)
    assert "mrpc: ksm-soft, seeds 1,2: FinK 1.00  ResK 0.20  FeaK 0.50  RelK 0.50" in svg
    assert "mrpc: ksm-hard, seeds 1: FinK 1.00  ResK 0.00  FeaK 1.00  RelK 0.50" in svg
    assert "mrpc: all" not in svg
    assert svg.count('class="seed s') == 4 * 3 and svg.count('class="mean ') == 4 * 2


def test_no_selecting_logs_is_an_error_naming_the_folder(tmp_path):
    fake_log(tmp_path / "stsb", "kd", 1, [[0.5, 0.5, 0.0, 0.0]])
    with pytest.raises(SystemExit, match="no finished .* logs in .*stsb"):
        module["main"]([str(tmp_path / "w.svg"), str(tmp_path / "stsb")])
    assert not (tmp_path / "w.svg").exists()
