"""report.svg: what a run chose and how well it did, drawn from its log.jsonl.

Panels, top to bottom:
  1. the dev metric of the final run over phases (dashed: the teacher's dev metric;
     dotted: chance, the score of always answering the most common class);
  2. the knowledge weights a1..a4 (FinK, ResK, FeaK, RelK) the final run used,
     sharing panel 1's x axis (phase index);
  3. only if the log has KSM episodes: each episode's mean action, over episodes.
Weights are often equal (all: 1/1/1/1; a KSM that settles on 1/0/0/1), so their lines
lie on top of each other: each knowledge has its own width (a1 widest, drawn first)
and dash pattern, so that every line shows through the ones above it, and the legend
says so.

The SVG is written by hand with the few element helpers below, so a report needs
no plotting package. Log records used (one JSON object per line, others ignored):
    {"event": "phase", "run": "final" | "episode", "episode": 0, "phase": 3,
     "action": [a1, a2, a3, a4], "dev": {"accuracy": 0.61} (optional), ...}
"""

import math
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.outputs import read_log, write_atomically

KNOWLEDGE = ["FinK", "ResK", "FeaK", "RelK"]  # the order of a1..a4 (method.md, "Four kinds of knowledge")
KNOWLEDGE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
KNOWLEDGE_DASHES = [None, "10 5", "4 4", "1 3"]  # solid, long, short, dotted: overlapping lines stay apart
CHANCE_COLOUR = "#999"
METRIC_COLOUR = "#6a3d9a"
GRID_COLOUR = "#e4e4e4"

WIDTH = 900
PLOT_LEFT, PLOT_WIDTH = 80, 660  # the right margin holds the legends
PHASE_PANEL_HEIGHT, EPISODE_PANEL_HEIGHT = 200, 130
DEV_TOP, WEIGHTS_TOP, EPISODES_TOP = 60, 300, 590  # panel tops; below each: 50 px of tick and axis labels


# ---- SVG elements: attribute names take '-' for '_' and cls for class; None attributes are left out

def _element(name: str, content: str | None = None, **attrs) -> str:
    text = "".join(f" {'class' if k == 'cls' else k.replace('_', '-')}={quoteattr(str(v))}"
                   for k, v in attrs.items() if v is not None)
    return f"<{name}{text}/>" if content is None else f"<{name}{text}>{escape(content)}</{name}>"


def line(x1, y1, x2, y2, stroke="#000", width=1.0, dash=None, cls=None) -> str:
    return _element("line", x1=f"{x1:.1f}", y1=f"{y1:.1f}", x2=f"{x2:.1f}", y2=f"{y2:.1f}",
                    stroke=stroke, stroke_width=width, stroke_dasharray=dash, cls=cls)


def polyline(points, stroke, width=2.0, cls=None, dash=None) -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return _element("polyline", points=coords, fill="none", stroke=stroke, stroke_width=width,
                    stroke_linejoin="round", stroke_dasharray=dash, cls=cls)


def circle(x, y, r, fill) -> str:
    return _element("circle", cx=f"{x:.1f}", cy=f"{y:.1f}", r=r, fill=fill)


def text(x, y, content: str, size=12, anchor="start", weight=None, rotate=False) -> str:
    return _element("text", content, x=f"{x:.1f}", y=f"{y:.1f}", font_size=size, text_anchor=anchor,
                    font_weight=weight, transform=f"rotate(-90 {x:.1f} {y:.1f})" if rotate else None)


def rect(x, y, w, h, fill="none", stroke=None) -> str:
    return _element("rect", x=f"{x:.1f}", y=f"{y:.1f}", width=f"{w:.1f}", height=f"{h:.1f}",
                    fill=fill, stroke=stroke)


# ---- axes

def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """Ticks inside [lo, hi] at a step of 1, 2 or 5 times a power of ten (at least 1 if integer)."""
    raw = (hi - lo) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, round(step))
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def padded_limits(values: list[float], pad_fraction: float, flat_pad: float) -> tuple[float, float]:
    """(min, max) widened by pad_fraction of the range each side, or by flat_pad if all are equal."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * pad_fraction if hi > lo else flat_pad
    return lo - pad, hi + pad


def tick_label(value: float, ticks: list[float]) -> str:
    """As many decimals as the tick step needs (0.25 -> 2, 0.2 -> 1, 5 -> 0)."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = 0
    while abs(round(step, decimals) - step) > 1e-9 * step:
        decimals += 1
    return f"{value:.{decimals}f}"


class Axes:
    """A plot box at (left, top) of size (width, height) showing x in xlim and y in ylim."""

    def __init__(self, left, top, width, height, xlim, ylim):
        self.left, self.top, self.width, self.height = left, top, width, height
        self.xlim, self.ylim = xlim, ylim

    def px(self, x: float) -> float:
        return self.left + (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * self.width

    def py(self, y: float) -> float:
        return self.top + self.height - (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * self.height

    def frame(self, title: str, ylabel: str, xlabel: str | None, yticks: list[float]) -> list[str]:
        """Box, grid, tick labels and axis labels; x tick labels only where xlabel is given."""
        bottom = self.top + self.height
        xticks = nice_ticks(*self.xlim, count=10, integer=True)
        out = [rect(self.left, self.top, self.width, self.height, fill="#fff")]
        for x in xticks:
            out.append(line(self.px(x), self.top, self.px(x), bottom, stroke=GRID_COLOUR))
            if xlabel is not None:
                out.append(text(self.px(x), bottom + 16, tick_label(x, xticks), size=11, anchor="middle"))
        for y in yticks:
            out.append(line(self.left, self.py(y), self.left + self.width, self.py(y), stroke=GRID_COLOUR))
            out.append(text(self.left - 6, self.py(y) + 4, tick_label(y, yticks), size=11, anchor="end"))
        out.append(rect(self.left, self.top, self.width, self.height, stroke="#555"))
        out.append(text(self.left, self.top - 8, title, size=13, weight="bold"))
        middle = self.top + self.height / 2
        out.append(text(self.left - 50, middle, ylabel, size=12, anchor="middle", rotate=True))
        if xlabel is not None:
            out.append(text(self.left + self.width / 2, bottom + 36, xlabel, size=12, anchor="middle"))
        return out

    def series(self, xs, ys, colour, width=2.0, cls=None, dash=None) -> list[str]:
        """A polyline with a dot at every point (so a single point still shows)."""
        points = [(self.px(x), self.py(y)) for x, y in zip(xs, ys)]
        return [polyline(points, colour, width, cls, dash)] + [circle(x, y, 2.5, colour) for x, y in points]

    def note(self, content: str) -> str:
        """A message in the empty plot, near the top (a teacher line may run through the middle)."""
        return text(self.left + self.width / 2, self.top + 30, content, size=13, anchor="middle")


def legend(left, top, entries) -> list[str]:
    """entries: (label, colour, dash, width) per row; colour None: a line of text alone."""
    out = []
    for row, (label, colour, dash, width) in enumerate(entries):
        y = top + 18 * row
        if colour is not None:
            out.append(line(left, y, left + 24, y, stroke=colour, width=width, dash=dash))
        out.append(text(left + (30 if colour is not None else 0), y + 4, label, size=12 if colour else 10))
    return out


def knowledge_legend(left, top) -> list[str]:
    """a1..a4 as drawn, and why their lines differ in width and dash."""
    entries = [(f"a{k + 1} {name}", KNOWLEDGE_COLOURS[k], KNOWLEDGE_DASHES[k], line_width(k))
               for k, name in enumerate(KNOWLEDGE)]
    return legend(left, top, entries + [("equal weights overlap:", None, None, 0),
                                        ("wide a1 under thin a4", None, None, 0)])


# ---- the log

def read_phase_records(log_path) -> list[dict]:
    """The "phase" records of a log.jsonl, in file order; KdError names the bad line."""
    records = []
    for number, record in read_log(log_path):
        if not isinstance(record, dict) or record.get("event") != "phase":
            continue
        action = record.get("action")
        if (record.get("run") not in ("final", "episode") or not isinstance(record.get("phase"), int)
                or not isinstance(action, list) or len(action) != len(KNOWLEDGE)):
            raise KdError(f"{log_path}:{number}: a phase record needs run 'final' or 'episode', "
                          f"an integer phase and an action of {len(KNOWLEDGE)} numbers")
        records.append(record)
    return records


def episode_mean_actions(records: list[dict]) -> tuple[list[int], list[list[float]]]:
    """(episode ids ascending, mean action of each) over the "episode" records."""
    by_episode = {}
    for r in records:
        if r["run"] == "episode":
            by_episode.setdefault(r.get("episode", 0), []).append(r["action"])
    episodes = sorted(by_episode)
    means = [[sum(a[k] for a in by_episode[e]) / len(by_episode[e]) for k in range(len(KNOWLEDGE))]
             for e in episodes]
    return episodes, means


# ---- the report

def line_width(k: int) -> float:
    """a1 is drawn first and thickest, a4 last and thinnest: lines on top of each other all stay visible."""
    return 1.5 + (len(KNOWLEDGE) - 1 - k)


def write_report(log_path, out_path, title: str, metric: str, teacher_score: float | None = None,
                 chance_score: float | None = None) -> None:
    """Draw report.svg for the run whose log is log_path; written atomically (temp file + rename).
    chance_score: the metric of always answering the most common class, drawn as a dotted line."""
    records = read_phase_records(log_path)
    final = sorted((r for r in records if r["run"] == "final"), key=lambda r: r["phase"])
    phases = [r["phase"] for r in final]
    dev = [(r["phase"], r["dev"][metric]) for r in final if (r.get("dev") or {}).get(metric) is not None]
    episodes, episode_actions = episode_mean_actions(records)

    xlim = padded_limits(phases, 0.02, 0.5) if phases else (0.0, 1.0)
    unit_ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    height = (EPISODES_TOP + EPISODE_PANEL_HEIGHT if episodes else WEIGHTS_TOP + PHASE_PANEL_HEIGHT) + 50
    body = []
    legend_left = PLOT_LEFT + PLOT_WIDTH + 20

    # 1. dev metric of the final run, teacher dashed, chance dotted
    scores = [v for _, v in dev] + [s for s in (teacher_score, chance_score) if s is not None]
    ylim = padded_limits(scores, 0.1, 0.05) if scores else (0.0, 1.0)
    top = Axes(PLOT_LEFT, DEV_TOP, PLOT_WIDTH, PHASE_PANEL_HEIGHT, xlim, ylim)
    body += top.frame(f"dev {metric}, final run", metric, None, nice_ticks(*ylim))
    if dev:
        body += top.series([p for p, _ in dev], [v for _, v in dev], METRIC_COLOUR, cls="dev")
    else:
        body.append(top.note(f"no dev {metric} in the log"))
    entries = [("student", METRIC_COLOUR, None, 2.5)]
    for name, score, colour, dash in (("teacher", teacher_score, "#444", "6 4"),
                                      ("chance", chance_score, CHANCE_COLOUR, "2 3")):
        if score is not None:
            y = top.py(score)
            body.append(line(top.left, y, top.left + top.width, y, stroke=colour, width=1.5, dash=dash, cls=name))
            entries.append((f"{name} {score:.4g}", colour, dash, 1.5))
    body += legend(legend_left, top.top + 10, entries)

    # 2. knowledge weights of the final run
    weights = Axes(PLOT_LEFT, WEIGHTS_TOP, PLOT_WIDTH, PHASE_PANEL_HEIGHT, xlim, (-0.04, 1.04))
    body += weights.frame("knowledge weights a1..a4, final run", "weight", "phase", unit_ticks)
    if final:
        for k, name in enumerate(KNOWLEDGE):
            body += weights.series(phases, [r["action"][k] for r in final], KNOWLEDGE_COLOURS[k],
                                   width=line_width(k), cls=f"action {name}", dash=KNOWLEDGE_DASHES[k])
    else:
        body.append(weights.note("no final-run phases in the log"))
    body += knowledge_legend(legend_left, weights.top + 10)

    # 3. KSM episodes: mean action per episode
    if episodes:
        panel = Axes(PLOT_LEFT, EPISODES_TOP, PLOT_WIDTH, EPISODE_PANEL_HEIGHT,
                     padded_limits(episodes, 0.02, 0.5), (-0.04, 1.04))
        body += panel.frame("KSM episodes: mean knowledge weights per episode", "mean weight", "episode",
                            unit_ticks[::2])
        for k, name in enumerate(KNOWLEDGE):
            body += panel.series(episodes, [a[k] for a in episode_actions], KNOWLEDGE_COLOURS[k],
                                 width=line_width(k), cls=f"episode {name}", dash=KNOWLEDGE_DASHES[k])
        body += knowledge_legend(legend_left, panel.top + 10)

    svg = document(title, height, body)
    write_atomically(Path(out_path), lambda tmp: tmp.write_text(svg, encoding="utf-8"))


def document(title: str, height: float, body: list[str]) -> str:
    """The SVG file: a white page WIDTH wide with title on top, then body's elements."""
    head = [rect(0, 0, WIDTH, height, fill="#fff"), text(WIDTH / 2, 26, title, size=18, anchor="middle", weight="bold")]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">\n'
            + _element("title", title) + "\n" + "\n".join(head + body) + "\n</svg>\n")
