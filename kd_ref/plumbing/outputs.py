"""Everything a run leaves in its folder, written so that a crash never leaves a
half-written file: each file goes to a temporary name first and is renamed."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from kd_ref.plumbing.disk import DiskFull, disk_full_error
from kd_ref.plumbing.errors import KdError


def write_json(path: Path, obj) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def write_atomically(path: Path, write) -> None:
    """write(tmp_path) fills a temporary file, which is fsynced and renamed to path. The temporary
    name is this process's (sweeps sharing --out both write summary.json) and is removed if
    writing fails: a full disk leaves the previous file, and a one-line error (kd_ref.plumbing.disk)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with disk_full_error(path):
            write(tmp)
            default_mode(tmp)
            fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def default_mode(path: Path) -> None:
    """Give a file or folder the permissions open() or mkdir() would: 0666 or 0777 less the umask.
    safetensors writes its files 0600 and mkdtemp makes folders 0700, which would lock the other
    users of a shared output folder out of its teacher, students and checkpoints."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


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
    """log.jsonl: one JSON object per line, handed to the OS as it is written; append=True
    continues a log (after a resume, kd_ref.plumbing.resume has cut it back to the checkpoint). A line
    the disk has no room for is cut off again (DiskFull): the log holds whole lines only."""

    def __init__(self, path: Path, append: bool = False):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o644)

    def __call__(self, record: dict) -> None:
        data = (json.dumps(record) + "\n").encode()
        end = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            with disk_full_error(self.path):
                while data:  # unbuffered: nothing is left to fail in close()
                    data = data[os.write(self.fd, data):]
        except DiskFull:
            os.ftruncate(self.fd, end)
            raise

    def close(self):
        os.close(self.fd)


def read_log(path) -> list[tuple[int, object]]:
    """(line number, value) of every non-blank line of a log.jsonl, in file order; a line that is not JSON
    is a KdError naming it."""
    records = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            records.append((number, json.loads(raw)))
        except json.JSONDecodeError as e:
            raise KdError(f"{path}:{number}: not a JSON object ({e.msg})") from None
    return records


def versions() -> dict:
    import safetensors
    import tokenizers
    import torch
    repo = Path(__file__).resolve().parents[2]
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


def finished_runs(out: Path) -> list[dict]:
    """Every finished run in an output folder (a <method>-s<seed>/ with metrics.json), whichever
    invocation made it: {method, seed, dev, wall_s}, by folder name."""
    results = []
    for path in sorted(out.glob("*-s*/metrics.json")):
        m = json.loads(path.read_text())
        results.append({"method": m["method"], "seed": m["seed"], "dev": m["dev"], "wall_s": sum(m["wall_s"].values())})
    return results


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
