"""speed/bench.py --profile: the one-call GPU profile issue 29 asks for where a target is missed.

On the CPU there are no kernels, so this checks what the GPU call relies on besides them: one
'profile' record per part (the step, the losses alone, the selector's phase end), the op table
and the gzipped Chrome trace in the folder, and a wall time per step. The kernel count reads the
trace's 'kernel' events, the category torch.profiler's Chrome export gives CUDA kernels.
"""
import gzip
import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench", ROOT / "speed" / "bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_profile_writes_a_record_table_and_trace_per_part(tmp_path):
    args = bench.parse_args(["--device", "cpu", "--batch", "2", "--seq", "16", "--variants", "eager",
                             "--profile", str(tmp_path), "--profile-steps", "2"])
    device = torch.device("cpu")
    setup = bench.Setup(args, "eager", device)
    records = bench.profile(setup, bench.make_batch(args, device), "eager", args.profile)
    assert [r["part"] for r in records] == ["step", "losses", "agent"]
    for r in records:
        assert r["what"] == "profile" and r["steps"] == 2 and r["wall_ms"] > 0
        assert r["kernels_per_step"] == 0 and r["busy_share"] is None  # no device kernels on the CPU
        stem = tmp_path / f"profile-small-eager-{r['part']}"
        assert "aten::" in stem.with_suffix(".txt").read_text()
        with gzip.open(stem.with_suffix(".trace.json.gz"), "rt") as f:
            names = {e.get("name") for e in json.load(f)["traceEvents"]}
        assert any(str(n).startswith("aten::") for n in names)  # the trace holds the ops it profiled
    assert not list(tmp_path.glob("*[!z]/*.json"))  # the uncompressed export is not left behind
    step_ops, loss_ops, agent_ops = ((tmp_path / f"profile-small-eager-{part}.txt").read_text()
                                     for part in ("step", "losses", "agent"))
    assert "_fused_adamw" in step_ops and "_fused_adamw" not in loss_ops + agent_ops
    assert "Adam.step" in agent_ops and "Adam.step" not in step_ops + loss_ops  # the agent's own optimizers


def test_a_step_is_also_timed_with_a_host_sync_as_run_py_makes():
    args = bench.parse_args(["--device", "cpu", "--batch", "2", "--seq", "16", "--steps", "2", "--repeats", "1",
                             "--warmup", "1"])
    record, _ = bench.bench_ours(args, "eager", torch.device("cpu"), bench.make_batch(args, torch.device("cpu")))
    assert record["step_ms"] > 0 and record["step_ms_host_sync"] > 0
