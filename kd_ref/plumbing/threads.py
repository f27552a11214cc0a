"""How many CPU threads a run uses: the cores nobody else is using, shared with the runs beside it.

torch's default is one thread per core. Two runs side by side then ask for twice
the cores there are, and the threads of each spin while they wait for cores the
other holds: two `run.py --demo` at once took 311 s each on 2 cores, one alone
29 s, the same two with one thread each 39 s (issue 28). So by default run.py takes
the cores free at its start: the cores it may run on, less those busy over 0.2 s
(from /proc/stat, else the load average) that no other kd-ref run explains, less
those other runs of this user were given by a count (--threads, OMP_NUM_THREADS),
shared evenly with the other runs that chose theirs this way. A run measures and
claims under one lock (per user, in the temporary folder), so two runs started at
once take turns; it holds its claim (an flock on a file named by its pid) while it
lives, and the kernel drops it when the run dies, however it dies.

A run started first takes the whole machine; a later one would find it all claimed.
So every run looks again now and then (rebalance, from each step's progress update,
at most every REBALANCE_S): its share is the cores less those others kept busy since
its last look (as at the start), less the counted claims, divided among the runs that
share. The first run gives a core back when a second starts, and each takes the whole
machine again once it is alone.
Time in niced processes counts as free: they yield their core to a run, so its
threads do not wait on them.

--threads N sets the number; so does OMP_NUM_THREADS, if set, when --threads is not.
"""
import fcntl
import os
import tempfile
import time
from pathlib import Path

import torch

from kd_ref.plumbing.errors import KdError

CLAIMS = Path(tempfile.gettempdir()) / f"kd-ref-threads-{os.getuid()}"
MEASURE_S = 0.2
REBALANCE_S = 5.0


def affinity() -> set[int]:
    """The cores this process may run on (its affinity mask: taskset, cgroups' cpusets)."""
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return set(range(os.cpu_count() or 1))


def usable_cores() -> int:
    return len(affinity())


def cpu_times(cores: set[int]) -> dict[int, tuple[float, float]] | None:
    """{core: (busy, total) jiffies} of `cores` from /proc/stat's cpuN lines, or None where there are
    none. Busy: user, system, irq, softirq and steal time; nice, idle and iowait count as free."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    times = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            values = [float(v) for v in fields[:8]]
            user, _nice, system, _idle, _iowait, irq, softirq, steal = values + [0.0] * (8 - len(values))
            times[int(name[3:])] = (user + system + irq + softirq + steal, sum(values))
    return times or None


def cpu_sample() -> dict | None:
    """cpu_times of this process's cores: those of its affinity only, so that a container's busy host does
    not count."""
    return cpu_times(affinity())


def busy_between(before: dict, after: dict) -> float:
    """How many cores were busy between two cpu_samples."""
    busy = 0.0
    for core, (busy_after, total_after) in after.items():
        busy_before, total_before = before.get(core, (busy_after, total_after))
        if total_after > total_before:
            busy += (busy_after - busy_before) / (total_after - total_before)
    return busy


def busy_cores(seconds: float = MEASURE_S) -> float:
    """How many of this process's cores others kept busy over the next `seconds` (it sleeps meanwhile)."""
    before = cpu_sample()
    if before is None:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    time.sleep(seconds)
    return busy_between(before, cpu_sample() or {})


def live_claims(folder: Path) -> list[tuple[int, bool]]:
    """(threads, shares) of every kd-ref run still alive but this process; shares: its count was chosen here
    (and follows rebalance), not given. The claims of dead runs are removed."""
    claims = []
    for path in folder.glob("*.claim"):
        if path.stem == str(os.getpid()):
            continue  # this process's earlier run (the tests run several in one process)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)  # we could lock it: its run is gone
        except BlockingIOError:
            fields = os.pread(fd, 20, 0).decode().split()  # "3 shares" or "3 counted"
            if fields and fields[0].isdigit():  # empty: a run between creating and writing its claim
                claims.append((int(fields[0]), fields[1:] == ["shares"]))
        finally:
            os.close(fd)
    return claims


def free_of_others(busy: float, claims: list[tuple[int, bool]], own: int = 0) -> int:
    """The cores left once those busy with work no kd-ref run explains (by its threads) are taken away."""
    foreign = max(0.0, busy - sum(n for n, _ in claims) - own)
    return usable_cores() - int(foreign + 0.5)


def share(usable: float, claims: list[tuple[int, bool]]) -> int:
    """One sharing run's cores: `usable` less the others' counted claims, split evenly with the other sharing runs."""
    counted = sum(n for n, shares in claims if not shares)
    sharing = 1 + sum(shares for _, shares in claims)
    return max(1, int((usable - counted) // sharing))


def claim_threads(wanted: int | None, folder: Path | None = None) -> int:
    """`wanted` threads, or when None this run's share of the cores free now (at least 1); claimed in folder
    (default CLAIMS) for this process until it exits. Measure and claim happen under one lock, so runs started
    at once take turns. Without a usable claims folder the measure alone decides. (torchrun sets
    OMP_NUM_THREADS=1 for its processes unless told otherwise: choose_threads keeps it.)"""
    folder = folder or CLAIMS
    try:
        folder.mkdir(parents=True, exist_ok=True)
        guard = os.open(folder / "measure.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return wanted or max(1, int(usable_cores() - busy_cores() + 0.5))
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        shares = wanted is None
        if shares:
            claims = live_claims(folder)
            wanted = share(free_of_others(busy_cores(), claims), claims)
            _sharing.update(folder=folder, next=time.monotonic() + REBALANCE_S, sample=cpu_sample())
        else:
            _sharing.clear()
        claim(folder, wanted, shares)
    finally:
        os.close(guard)
    return wanted


_held = []  # the open claim file of this process: closing it would drop the claim
_sharing = {}  # a run whose count was chosen here: its claims folder, when to look next, the cpu_sample of its last look


def claim(folder: Path, threads: int, shares: bool = False) -> None:
    for old in _held:  # a second run in one process (the tests) replaces its claim; flock would block on it
        os.close(old)
    _held.clear()
    fd = os.open(folder / f"{os.getpid()}.claim", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{threads} {'shares' if shares else 'counted'}".encode())
    _held.append(fd)


def rebalance(now: float | None = None) -> None:
    """A sharing run's threads set to its share beside the runs alive now; at most every REBALANCE_S,
    a read of /proc/stat and a few file locks each time. The cores busy since the last look that no
    kd-ref run explains (by its threads) are left to their processes, as at the start; a load that has
    gone (a run starting beside this one, importing torch) no longer counts. Called from the main thread
    (each step's progress update): torch's thread count belongs to the thread that sets it."""
    now = time.monotonic() if now is None else now
    if not _sharing or now < _sharing["next"]:
        return
    _sharing["next"] = now + REBALANCE_S
    sample, claims = cpu_sample(), live_claims(_sharing["folder"])
    busy = busy_between(_sharing["sample"], sample) if _sharing["sample"] and sample else 0.0
    _sharing["sample"] = sample
    threads = share(free_of_others(busy, claims, own=torch.get_num_threads()), claims)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        os.pwrite(_held[0], f"{threads} shares".ljust(20).encode(), 0)


def choose_threads(flag: int | None) -> int:
    """--threads, else OMP_NUM_THREADS, else the free cores; claimed, and set with torch.set_num_threads
    before any work."""
    if flag is not None and flag < 1:
        raise KdError(f"--threads {flag}: must be at least 1")
    if flag is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        flag = max(1, int(os.environ["OMP_NUM_THREADS"]))
    threads = claim_threads(flag)
    torch.set_num_threads(threads)
    return threads
