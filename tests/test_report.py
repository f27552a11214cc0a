"""report.svg: valid XML, one polyline per series with a point per phase, robust to thin logs."""

import json
import xml.etree.ElementTree as ET

import pytest

from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.report import KNOWLEDGE, nice_ticks, tick_label, write_report

SVG = "{http://www.w3.org/2000/svg}"


def phase(run, phase_index, action, episode=0, dev=None):
    record = {"event": "phase", "run": run, "episode": episode, "phase": phase_index,
              "step": 10 * phase_index, "action": action, "reward": 0.01, "reward_task": 0.008,
              "reward_explore": 0.002, "q": 0.1,
              "losses": {"fink": 0.7, "resk": 0.1, "feak": 2.0, "relk": 0.01}, "lr": 2e-5}
    if dev is not None:
        record["dev"] = {"accuracy": dev}
    return record


def write_log(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def polylines(svg_path):
    """{class attribute: list of (x, y) points} of the series polylines."""
    root = ET.parse(svg_path).getroot()
    assert root.tag == SVG + "svg"
    return {p.get("class"): [tuple(map(float, xy.split(","))) for xy in p.get("points").split()]
            for p in root.iter(SVG + "polyline")}


def texts(svg_path):
    return [t.text for t in ET.parse(svg_path).getroot().iter(SVG + "text")]


def test_full_log(tmp_path):
    records = [phase("episode", k, [0.1 * e, 0.5, 0.5, 1.0], episode=e) for e in range(3) for k in range(5)]
    records.append({"event": "episode_end", "episode": 2})  # other events are ignored
    records += [phase("final", k, [1.0, 0.9 - 0.1 * k, 0.0, 0.5], dev=0.5 + 0.02 * k if k % 2 else None)
                for k in range(8)]
    out = tmp_path / "report.svg"
    log = write_log(tmp_path / "log.jsonl", records)
    write_report(log, out, "RTE ksm-soft", "accuracy", teacher_score=0.8, chance_score=0.45)
    lines = polylines(out)

    assert set(lines) == {"dev"} | {f"action {k}" for k in KNOWLEDGE} | {f"episode {k}" for k in KNOWLEDGE}
    assert len(lines["dev"]) == 4  # dev at phases 1, 3, 5, 7 only
    assert all(len(lines[f"action {k}"]) == 8 for k in KNOWLEDGE)
    assert all(len(lines[f"episode {k}"]) == 3 for k in KNOWLEDGE)

    # phases share the x axis of panels 1 and 2; dev rises, so its y (downwards) falls
    action_xs = [x for x, _ in lines["action FinK"]]
    assert action_xs == sorted(action_xs) and [x for x, _ in lines["dev"]] == action_xs[1::2]
    dev_ys = [y for _, y in lines["dev"]]
    assert dev_ys == sorted(dev_ys, reverse=True)
    # FinK constant at 1, FeaK constant at 0, ResK falling; the episode mean of a1 rises 0 -> 0.2
    assert len({y for _, y in lines["action FinK"]}) == 1 and len({y for _, y in lines["action FeaK"]}) == 1
    assert lines["action FinK"][0][1] < lines["action FeaK"][0][1]
    resk_ys = [y for _, y in lines["action ResK"]]
    assert resk_ys == sorted(resk_ys)
    assert lines["episode FinK"][0][1] > lines["episode FinK"][2][1]

    root = ET.parse(out).getroot()
    (teacher,) = [el for el in root.iter(SVG + "line") if el.get("class") == "teacher"]
    assert teacher.get("stroke-dasharray")
    assert float(teacher.get("y1")) < min(dev_ys)  # the teacher's 0.8 is above every student score
    (chance,) = [el for el in root.iter(SVG + "line") if el.get("class") == "chance"]
    assert float(chance.get("y1")) > max(dev_ys)  # the chance score 0.45 is below every student score
    # equal weights draw on top of each other: each knowledge has its own width and dash pattern
    styles = {(p.get("stroke-width"), p.get("stroke-dasharray")) for p in root.iter(SVG + "polyline")
              if (p.get("class") or "").startswith("action ")}
    assert len(styles) == len(KNOWLEDGE) and len({w for w, _ in styles}) == len(KNOWLEDGE)
    labels = texts(out)
    assert "chance 0.45" in labels and "wide a1 under thin a4" in labels
    assert "RTE ksm-soft" in labels and "phase" in labels and "episode" in labels
    assert all(f"a{i + 1} {k}" in labels for i, k in enumerate(KNOWLEDGE))
    assert not list(tmp_path.glob("*.tmp"))


def test_single_phase_without_dev_or_episodes(tmp_path):
    out = tmp_path / "report.svg"
    write_report(write_log(tmp_path / "log.jsonl", [phase("final", 0, [1, 0, 0, 0])]), out, "t", "accuracy")
    lines = polylines(out)
    assert set(lines) == {f"action {k}" for k in KNOWLEDGE}
    assert all(len(points) == 1 for points in lines.values())
    assert "no dev accuracy in the log" in texts(out)
    assert "episode" not in texts(out)


def test_missing_final_run_and_other_metric(tmp_path):
    records = [phase("episode", 0, [0.5] * 4, dev=0.6)]
    out = tmp_path / "report.svg"
    write_report(write_log(tmp_path / "log.jsonl", records), out, "t", "mcc", teacher_score=0.3)
    lines = polylines(out)
    assert set(lines) == {f"episode {k}" for k in KNOWLEDGE}
    assert {"no dev mcc in the log", "no final-run phases in the log"} <= set(texts(out))


def test_title_is_escaped(tmp_path):
    out = tmp_path / "report.svg"
    title = 'a<b & "c"'
    log = write_log(tmp_path / "log.jsonl", [phase("final", 0, [1, 0, 0, 0], dev=0.5)])
    write_report(log, out, title, "acc<&")
    assert "a&lt;b &amp;" in out.read_text()
    root = ET.parse(out).getroot()
    assert root.find(SVG + "title").text == title
    assert title in texts(out) and "dev acc<&, final run" in texts(out)


def test_overwrites_existing_report(tmp_path):
    out = tmp_path / "report.svg"
    out.write_text("old")
    write_report(write_log(tmp_path / "log.jsonl", [phase("final", 0, [1, 0, 0, 0])]), out, "t", "accuracy")
    assert out.read_text().startswith("<svg")


@pytest.mark.parametrize("bad, message", [
    ("{not json", "log.jsonl:2: not a JSON object"),
    (json.dumps({"event": "phase", "run": "final", "phase": 1, "action": [1, 0]}), "log.jsonl:2: a phase"),
    (json.dumps({"event": "phase", "run": "warmup", "phase": 1, "action": [1, 0, 0, 0]}), "log.jsonl:2: a"),
])
def test_bad_lines_name_file_and_line(tmp_path, bad, message):
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(phase("final", 0, [1, 0, 0, 0])) + "\n" + bad + "\n")
    with pytest.raises(KdError, match=message):
        write_report(log, tmp_path / "report.svg", "t", "accuracy")
    assert not (tmp_path / "report.svg").exists()


def test_ticks():
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.53, 0.87) == [0.6, 0.7, 0.8]  # step: the smallest nice one >= 0.34 / 5
    assert nice_ticks(-0.5, 0.5, integer=True) == [0.0]
    assert nice_ticks(0, 37, count=10, integer=True) == [0, 5, 10, 15, 20, 25, 30, 35]
    assert [tick_label(t, [0, 0.25]) for t in [0.0, 0.25, 1.0]] == ["0.00", "0.25", "1.00"]
    assert tick_label(20.0, [0.0, 5.0]) == "20"
