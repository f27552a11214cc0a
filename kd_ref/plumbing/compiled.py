"""The fast path's model side: compiled teacher and student forwards, CUDA math settings,
the CPU allocator setting, and a count of compiled graphs to check that training never
recompiles.

Why there are no recompiles after warm-up: batching.py gives every batch the same
number of rows and one of a few bucket lengths, and each model is compiled with
dynamic=False, so it gets one specialised graph per (bucket, train/eval mode,
outputs asked for). After the first pass over each bucket, and the first
evaluation, nothing compiles again; tests/test_compile.py counts it. Loss
weights and temperature are tensors (kd_ref/fused.py) for the same reason.
"""
import ctypes

import torch
from torch._dynamo.utils import counters

# Compiled graphs kept per code object. Dynamo's default (8) is below what one run
# needs: every compiled module shares nn.Module's call, and teacher and student
# each take a graph per bucket and mode. Past the limit dynamo runs eager, with only a warning.
RECOMPILE_LIMIT = 64


def default_compile(device) -> bool:
    """The --compile default: on for CUDA, off for the CPU.

    On the 2-core CPU the compiled step was no faster than the eager one and the
    cold compile took 3.5 minutes (speed/BENCHMARKS.md), so compiling there never pays.
    """
    return torch.device(device).type == "cuda"


def use_tf32() -> None:
    """fp32 matmuls (an fp32 run, anything outside bf16 autocast) run as TF32 on tensor cores."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


# glibc mallopt parameters (malloc.h) and the values keep_freed_memory sets; glibc reads the
# same settings from the environment as MALLOC_MMAP_MAX_ and MALLOC_TRIM_THRESHOLD_.
MALLOPT = {"M_MMAP_MAX": (-4, 0), "M_TRIM_THRESHOLD": (-1, 2 ** 31 - 1)}


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS.

    A CPU training step allocates and frees the same large tensors every step (the 47 MB
    word-embedding gradient of bert-base's vocabulary, attention maps, FFN activations). By
    default glibc gives blocks above its mmap threshold (which adapts up to 32 MiB) fresh
    pages from the OS and unmaps them on free, and trims free memory off the top of its
    heap, so each step writes to new pages and pays a page fault per 4 KiB: zeroing the
    embedding gradient took 12.6 ms instead of 1.5 ms (speed/BENCHMARKS.md, Run 4). The CPU tuning
    guides of PyTorch and of Intel's extension suggest preloading jemalloc or tcmalloc for
    this; these two settings get the effect without another library. Memory then stays at
    its high-water mark.
    Returns False where there is no glibc (the setting is then skipped).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(param, value) == 1 for param, value in MALLOPT.values())


def compile_mode(cuda_graphs: bool) -> str | None:
    """torch.compile's mode for run.py's --cuda-graphs: "reduce-overhead" records each compiled graph
    as a CUDA graph and replays it with one launch. On an H200 the compiled step was bound by the
    host's kernel launches, not the device: CUDA graphs on the models cut bert-base -> 6 layers from
    24.4 to 10.6 ms (speed/BENCHMARKS.md, "GPU: the first run"). The training loop then calls
    torch.compiler.cudagraph_mark_step_begin() before each step, and reads a graph's outputs only
    before the next replay overwrites them."""
    return "reduce-overhead" if cuda_graphs else None


def compile_model(model: torch.nn.Module, *, mode: str | None = None, backend: str = "inductor") -> torch.nn.Module:
    """Compile model's forward in place and return it.

    nn.Module.compile keeps the module, its parameters and its state_dict keys,
    so the optimizer, checkpoints and load_state_dict work as before.
    mode="reduce-overhead" adds CUDA graphs (call torch.compiler.cudagraph_mark_step_begin()
    before each training step). backend="eager" captures the same graphs, with
    the same guards and recompiles, without generating kernels: tests use it.
    """
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    model.compile(dynamic=False, mode=mode, backend=backend)
    return model


def compile_counts() -> dict:
    """So far in this process: 'graphs' dynamo compiled, and 'eager_fallbacks', the calls
    it gave up compiling (recompile limit, errors) and ran eager. Take differences around a run."""
    return {"graphs": counters["stats"]["unique_graphs"],
            "eager_fallbacks": counters["frames"]["total"] - counters["frames"]["ok"]}
