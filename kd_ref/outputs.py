"""Everything a run leaves in its folder, written so that a crash never leaves a
half-written file: each file goes to a temporary name first and is renamed."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np


def write_json(path: Path, obj) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def write_atomically(path: Path, write) -> None:
    """write(tmp_path) fills a temporary file, which is fsynced and renamed to path."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    fsync(tmp)
    os.replace(tmp, path)


def fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def first_change(before: dict, now: dict, skip=(), defaults=None) -> tuple | None:
    """(key, value before, value now) of the first key, in sorted order, whose value differs between
    two records of how something was made, or None. A key `before` lacks takes its value from
    `defaults` (a field added since `before` was written, with the old behaviour as default)."""
    defaults = defaults or {}
    for key in sorted(set(before) | set(now)):
        old = before.get(key, defaults.get(key))
        if key not in skip and old != now.get(key):
            return key, old, now.get(key)
    return None


class JsonlLog:
    """log.jsonl: one JSON object per line, flushed as it is written; append=True continues
    a log (after a resume, kd_ref.resume has cut it back to the checkpoint)."""

    def __init__(self, path: Path, append: bool = False):
        self.file = open(path, "a" if append else "w")

    def __call__(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self):
        self.file.close()


def versions() -> dict:
    import safetensors
    import tokenizers
    import torch
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
            "numpy": np.__version__, "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__, "git_commit": commit, "git_dirty": dirty}


def mean_std(values: list[float]) -> dict:
    """Sample standard deviation (n - 1), 0 for a single value."""
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": len(arr)}


def summarise(results: list[dict], teacher_dev: dict) -> tuple[dict, str]:
    """Mean and std of each dev metric per method over seeds: summary.json content and a
    Markdown table."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    summary = {"teacher_dev": teacher_dev, "methods": {}}
    for m in methods:
        runs = [r for r in results if r["method"] == m]
        summary["methods"][m] = {
            "seeds": [r["seed"] for r in runs],
            "dev": {k: mean_std([r["dev"][k] for r in runs]) for k in runs[0]["dev"]},
            "wall_s": mean_std([r["wall_s"] for r in runs])}
    keys = list(teacher_dev)
    lines = ["| method | seeds | " + " | ".join(keys) + " | wall s |", "|---" * (len(keys) + 3) + "|",
             "| teacher | - | " + " | ".join(f"{100 * teacher_dev[k]:.2f}" for k in keys) + " | - |"]
    for m, s in summary["methods"].items():
        cells = [f"{100 * s['dev'][k]['mean']:.2f} ± {100 * s['dev'][k]['std']:.2f}" for k in keys]
        lines.append(f"| {m} | {len(s['seeds'])} | " + " | ".join(cells) + f" | {s['wall_s']['mean']:.0f} |")
    return summary, "\n".join(lines) + "\n"
