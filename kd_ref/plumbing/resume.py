"""Checkpoints of a distillation run's whole training state, and resuming from one.

A checkpoint is taken at the end of every episode and final run, and at the end of every
--checkpoint-every phases once --checkpoint-minutes have passed since the last one (a run's time,
not its phases, is what a crash loses: on an H200 a phase of the KSM's episodes takes under a second,
and a save of a 3-layer MiniLM student's 214 MB state 0.24 to 1.2 s on a 2-core CPU,
speed/BENCHMARKS.md), in <run>/checkpoint/:

    meta.json           where the run stands: run ('episode' or 'final'),
                        episode, phase, step, the size of log.jsonl then,
                        and the wall time spent so far
    weights.safetensors student.* and projections.* tensors
    state.pt            everything else, torch.save of plain dicts, lists,
                        numbers and tensors (torch.load(weights_only=True)
                        reads it): 'optimizer', 'scheduler', 'selector'
                        (the KSM actor, critic, targets, their optimisers,
                        replay buffer, noise scale, generator), 'loss_norm',
                        'loop' (the phase awaiting its reward, the gold loss
                        before it) and 'rng' (python, numpy, torch CPU and
                        CUDA states)

Writing is atomic: the files go to checkpoint.tmp/ (each fsynced), which then
replaces checkpoint/ by two renames; a crash at any point leaves a complete
checkpoint/ or checkpoint.old/, and load() takes whichever is complete. A disk
that fills up while writing stops the run with kd_ref.plumbing.disk.DiskFull, naming the
file; checkpoint.tmp/ is removed and checkpoint/ stays as it was.

The teacher's fine-tuning keeps its checkpoints the same way, in
<out>/teacher-checkpoint/ (name='teacher-checkpoint', no log): 'teacher' weights,
'optimizer', 'scheduler', 'loop' (the step) and 'rng'; its meta.json also holds
the fine-tuning recipe (kd_ref/plumbing/teacher_setup.py) and the seconds spent so far.

Bitwise resume: the batches of an epoch are a function of the seed (kd_ref.
batching), so a resumed run regenerates them and skips the steps already
taken; with every RNG state restored, the rest of the run repeats exactly
what the uninterrupted run did (tested on CPU).
"""
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from kd_ref.plumbing.disk import disk_full_error
from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.outputs import default_mode, fsync

FILES = ("meta.json", "weights.safetensors", "state.pt")


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    keys = torch.from_numpy(numpy_state[1].astype(np.int64))  # uint32 words; int64 tensors load everywhere
    return {"python": random.getstate(), "numpy": (numpy_state[0], keys, *numpy_state[2:]),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpoints:
    """The checkpoints of one run folder: <run_dir>/<name>/, with log.jsonl's size when log.
    minutes: the least time between two saves that waited() allows (0: no wait)."""

    def __init__(self, run_dir: Path, every: int, name: str = "checkpoint", log: bool = True, minutes: float = 0.0):
        self.dir, self.every, self.name = Path(run_dir), every, name
        self.log_path = self.dir / "log.jsonl" if log else None
        self.min_seconds = 60 * minutes
        self.saved_at = time.monotonic()  # the first save waits from the start, as the later ones from the last

    def complete(self) -> Path | None:
        """The newest folder holding a whole checkpoint, or None."""
        for name in (self.name, self.name + ".old"):
            if all((self.dir / name / f).is_file() for f in FILES):
                return self.dir / name
        return None

    def exists(self) -> bool:
        return self.complete() is not None

    def due(self, phase: int, last: bool) -> bool:
        """every = 0: at the end of each run only. The same on every rank (a function of the phase):
        the weights' finiteness is checked where it is true, the save waits for waited() besides."""
        return last or (self.every > 0 and (phase + 1) % self.every == 0)

    def waited(self) -> bool:
        """Whether `minutes` have passed since the last save (or since this object was made)."""
        return time.monotonic() - self.saved_at >= self.min_seconds

    def at_run_ends(self) -> "Checkpoints":
        """The same checkpoints, saved only at the end of each run: for a search's many short proxy runs,
        where a checkpoint per phase would cost more than redoing the proxy run."""
        return Checkpoints(self.dir, 0, self.name, log=self.log_path is not None)

    def save(self, meta: dict, modules: dict, stateful: dict, loop: dict) -> None:
        """meta: position and times (JSON); modules: name -> nn.Module (weights); stateful:
        name -> object with state_dict(); loop: the train loop's own variables."""
        tmp, final, old = (self.dir / (self.name + n) for n in (".tmp", "", ".old"))
        shutil.rmtree(tmp, ignore_errors=True)
        weights = {f"{name}.{k}": v.detach().cpu().contiguous()
                   for name, module in modules.items() for k, v in module.state_dict().items()}
        state = {name: obj.state_dict() for name, obj in stateful.items()}
        log_bytes = self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0
        writes = {"weights.safetensors": lambda p: save_file(weights, p),
                  "state.pt": lambda p: torch.save({**state, "loop": loop, "rng": rng_state()}, p),
                  "meta.json": lambda p: p.write_text(json.dumps({**meta, "log_bytes": log_bytes}, indent=2) + "\n")}
        try:
            with disk_full_error(final):
                tmp.mkdir()
            for name, write in writes.items():
                with disk_full_error(final / name):
                    write(tmp / name)
                    default_mode(tmp / name)
                    fsync(tmp / name)
        except BaseException:  # a full disk (or Ctrl-C): no half checkpoint left beside the last good one
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        fsync(self.dir)
        shutil.rmtree(old, ignore_errors=True)
        self.saved_at = time.monotonic()

    def load(self) -> dict | None:
        """The newest complete checkpoint as {'meta', 'weights', 'state'}, or None if there is none."""
        folder = self.complete()
        if folder is None:
            return None
        try:
            return {"meta": json.loads((folder / "meta.json").read_text()),
                    "weights": load_file(folder / "weights.safetensors"),
                    "state": torch.load(folder / "state.pt", weights_only=True)}
        except Exception as e:  # a checkpoint we cannot read is a user-facing error, not a traceback
            raise KdError(f"{folder}: cannot read the checkpoint ({type(e).__name__}: {e}); "
                          "delete it or pass --overwrite to start the run again") from None

    def restore(self, ckpt: dict, modules: dict, stateful: dict) -> dict:
        """Load a checkpoint into the live objects; returns the loop variables."""
        for name, module in modules.items():
            prefix = name + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in ckpt["weights"].items() if k.startswith(prefix)})
        for name, obj in stateful.items():
            obj.load_state_dict(ckpt["state"][name])
        set_rng_state(ckpt["state"]["rng"])
        return ckpt["state"]["loop"]

    def remove(self) -> None:
        """Drop every checkpoint (the teacher's, once the fine-tuned teacher is saved)."""
        for n in (".tmp", "", ".old"):
            shutil.rmtree(self.dir / (self.name + n), ignore_errors=True)

    def rewind_log(self, ckpt: dict) -> None:
        """Cut log.jsonl back to what it held when the checkpoint was taken: later lines are redone."""
        with open(self.log_path, "r+b") as f:
            f.truncate(ckpt["meta"]["log_bytes"])
