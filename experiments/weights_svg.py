"""One picture of the knowledge weights the selecting methods chose, over the final run's phases.

    python experiments/weights_svg.py experiments/logs/select/weights.svg experiments/logs/study-lr5e-5/mrpc experiments/logs/study-lr5e-5/stsb

One panel per folder and selecting method (ksm-soft, ksm-hard, random-soft, random-hard) found
in it as <method>-s<seed>/log.jsonl: thin lines are single seeds, thick lines with dots their
mean over seeds, one colour per knowledge (FinK, ResK, FeaK, RelK, as in each run's report.svg).
The panel's title gives each knowledge's mean weight over phases and seeds. Works on run folders
and on the copies experiments/collect_runs.py makes.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from kd_ref.plumbing.outputs import write_atomically  # noqa: E402
from kd_ref.plumbing.report import (KNOWLEDGE, KNOWLEDGE_COLOURS, KNOWLEDGE_DASHES, PLOT_LEFT, PLOT_WIDTH,  # noqa: E402
                                   Axes, document, knowledge_legend, line_width, padded_limits, polyline,
                                   read_phase_records)

SELECTING = ("ksm-soft", "ksm-hard", "random-soft", "random-hard")
PANEL_HEIGHT, PANEL_GAP, TOP = 180, 80, 50


def final_actions(log_path: Path) -> dict[int, list[float]]:
    """phase -> the action of the final run's phase record."""
    return {r["phase"]: r["action"] for r in read_phase_records(log_path) if r["run"] == "final"}


def panels(folders: list[Path]) -> list[tuple[str, dict[int, dict[int, list[float]]]]]:
    """(label, {seed: {phase: action}}) per folder and selecting method that has finished logs."""
    found = []
    for folder in folders:
        for method in SELECTING:
            runs = {int(p.parent.name.rsplit("-s", 1)[1]): final_actions(p)
                    for p in sorted(folder.glob(f"{method}-s*/log.jsonl"))}
            runs = {seed: actions for seed, actions in runs.items() if actions}
            if runs:
                found.append((f"{folder.name}: {method}", dict(sorted(runs.items()))))
    return found


def draw(found, title: str) -> str:
    height = TOP + len(found) * (PANEL_HEIGHT + PANEL_GAP)
    body = []
    for row, (label, runs) in enumerate(found):
        phases = sorted({p for actions in runs.values() for p in actions})
        top = TOP + 30 + row * (PANEL_HEIGHT + PANEL_GAP)
        axes = Axes(PLOT_LEFT, top, PLOT_WIDTH, PANEL_HEIGHT, padded_limits(phases, 0.02, 0.5), (-0.04, 1.04))
        shared = [p for p in phases if all(p in actions for actions in runs.values())]
        means = [[sum(runs[s][p][k] for s in runs) / len(runs) for p in shared] for k in range(len(KNOWLEDGE))]
        overall = "  ".join(f"{name} {sum(m) / len(m):.2f}" for name, m in zip(KNOWLEDGE, means) if m)
        seeds = ",".join(map(str, runs))
        body += axes.frame(f"{label}, seeds {seeds}: {overall}", "weight", "phase of the final run",
                           [0.0, 0.25, 0.5, 0.75, 1.0])
        for k, name in enumerate(KNOWLEDGE):
            for seed, actions in runs.items():
                ps = sorted(actions)
                body.append(polyline([(axes.px(p), axes.py(actions[p][k])) for p in ps], KNOWLEDGE_COLOURS[k],
                                     width=1.0, cls=f"seed s{seed} {name}"))
            body += axes.series(shared, means[k], KNOWLEDGE_COLOURS[k], width=line_width(k), cls=f"mean {name}",
                                dash=KNOWLEDGE_DASHES[k])
        body += knowledge_legend(PLOT_LEFT + PLOT_WIDTH + 20, top + 10)
    return document(title, height, body)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    out, folders = Path(argv[0]), [Path(f) for f in argv[1:]]
    found = panels(folders)
    if not found:
        sys.exit(f"error: no finished {'/'.join(SELECTING)} logs in {', '.join(map(str, folders))}")
    svg = draw(found, "knowledge weights chosen, final runs (thin: seeds, thick: mean)")
    write_atomically(out, lambda tmp: tmp.write_text(svg, encoding="utf-8"))
    print(f"{out}: {len(found)} panels")


if __name__ == "__main__":
    main(sys.argv[1:])
