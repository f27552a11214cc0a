"""A disk that fills up while kd-ref writes: one line naming the file and the free space
found, instead of a library's traceback.

Every write point (the teacher, its checkpoint and cache, a run's checkpoint, student,
log, predictions and JSON files) writes a temporary file first and wraps the write in
disk_full_error; the caller removes the temporary file, so the previous good file or
checkpoint stays in place and a rerun continues from it.
"""
import errno
import shutil
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

from kd_ref.plumbing.errors import KdError

# What the writers say when the disk is full: Python and safetensors keep the errno
# (safetensors as the text of a Rust io::Error), torch's zip writer only reports the short write.
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "unexpected pos", "file write failed")


class DiskFull(KdError):
    """No space left while writing a file; the message names it and the free space."""


@contextmanager
def disk_full_error(path: Path):
    """Turn a full disk inside the block into DiskFull naming path (the file being written,
    as the user will look for it)."""
    try:
        yield
    except Exception as e:
        if not is_disk_full(e):
            raise
        raise DiskFull(f"{path}: no space left on the device ({size(free_bytes(path))} free); make room "
                       "and rerun: unfinished runs continue from their last checkpoint") from None


def is_disk_full(e: Exception) -> bool:
    """Whether a writer's exception means no space (or quota) was left."""
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno in FULL_ERRNOS
    if isinstance(e, (OSError, RuntimeError, SafetensorError)):
        return any(text in str(e) for text in FULL_TEXTS)
    return False


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding path (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def size(n: int) -> str:
    """A byte count for people: '0 bytes', '812.0 KiB', '3.4 GiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
