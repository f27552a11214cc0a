"""One writer at a time for each folder run.py writes, across processes and hosts.

Two processes writing one run folder (a sweep started twice, job arrays sharing
--out) resume from each other's checkpoints and interleave their logs. So run.py
holds a lock on every run folder it writes, for as long as it runs, and one on the
teacher stage (teacher/, teacher-checkpoint/, teacher-cache.safetensors, shared by
every method and seed written to the same --out) while it prepares and reads them.

The lock of <out>/<name> is flock(2) on <out>/.locks/<name>.lock: beside the
folder, not in it, since a fresh run removes its folder and a lock on a removed
file guards nothing. The kernel releases a flock when its holder dies, however it
dies (SIGKILL, out of memory), so a dead holder never blocks the next run; on NFS,
Linux maps flock to a POSIX lock, which the server drops when the client dies
(NFSv4: when its lease expires). The holder writes its pid, host and start time
into the file, for the next process's error to name it. Under torchrun, rank 0
holds the locks for the job.
"""
import fcntl
import os
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from kd_ref.plumbing import distributed
from kd_ref.plumbing.disk import disk_full_error
from kd_ref.plumbing.errors import KdError


@contextmanager
def hold(folder: Path, wait: bool = False):
    """Hold the lock of folder for the block. When another process holds it: a KdError naming
    the folder and that process or, with wait, wait for it to let go (saying so)."""
    path = folder.parent / ".locks" / f"{folder.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's line stays readable
    try:
        if not lock(fd, path, blocking=False):
            holder = read_holder(fd)
            if not wait:
                raise KdError(f"{folder} is in use by {holder}: let it finish, or use another --out (lock: {path})")
            print(f"{folder} is in use by {holder}: waiting for it to finish", flush=True)
            lock(fd, path, blocking=True)
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        with disk_full_error(path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # let go: no holder to name
    finally:
        os.close(fd)  # releases the flock


def lock(fd: int, path: Path, blocking: bool) -> bool:
    """flock; False when another process holds it. A file system without locks (Lustre mounted
    without flock, some FUSE) gets a warning, and the run goes on unguarded."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        print(f"warning: {path}: cannot lock ({e.strerror}): nothing stops a second process from writing "
              "the same folder", file=sys.stderr)
        return True


def read_holder(fd: int) -> str:
    """The holder's line; it writes it just after taking the lock, so an empty file is retried."""
    for _ in range(20):
        line = os.pread(fd, 400, 0).decode(errors="replace").strip()
        if line:
            return line
        time.sleep(0.05)
    return "another process"


@contextmanager
def hold_all(folders: list[Path], device, wait: bool = False):
    """Rank 0 holds the locks of folders for the block, for every rank; when it cannot, every
    rank stops at once. Under torchrun rank 0 does not wait: the other ranks would wait in a
    collective, which times out."""
    with ExitStack() as held:
        error = None
        if distributed.is_main():
            try:
                for folder in folders:
                    held.enter_context(hold(folder, wait=wait and distributed.world() == 1))
            except KdError as e:
                error = e
        if distributed.world() > 1 and distributed.from_main(torch.tensor(int(error is not None), device=device)):
            error = error or KdError(f"{folders[0].parent}: rank 0 could not lock it (its error names the holder)")
        if error:
            raise error
        yield
        distributed.barrier()  # rank 0 lets go once every rank is done with the folders
