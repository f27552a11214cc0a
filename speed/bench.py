"""Benchmark of one knowledge-distillation training step: ours (eager, compiled, compiled with
CUDA graphs) against the transformers-style yardstick ../shared/bench/hf_kd_baseline.py
(path: $KD_BASELINE), run on the same shapes in the same invocation.

    python speed/bench.py                      # CPU: 6L/384 teacher -> 3 layers, fp32, batch 8, seq 128
    python speed/bench.py --device cuda        # bert-base -> 6 layers, bf16, batch 32, seq 128
    speed/gpu.sh                         # every GPU measurement, JSON lines into $OUT

One step, as the training loop runs it: teacher forward (eval mode, no_grad), student
forward, every knowledge loss (FinK, ResK, FeaK, RelK; AttK with --attk) and their
weighted sum, backward, gradient clipping, AdamW, LR schedule; plus the selector's
work of a phase (state, actor, critic and actor updates) divided by --steps-per-phase.
Not in it: the reward's evaluation pass at a phase end (a student forward over the
reward split), whose cost per batch is reported as parts_ms.student_eval.
Random weights and tokens; half of the batch is padded from 3/4 of its length, as
in the baseline. Sequences per second = batch / median step time. On the CPU ours runs
with kd_ref.plumbing.compiled.keep_freed_memory, as run.py does (--malloc default: without); the
baseline runs as written ('eager') and with the same allocator setting ('eager+keep').

MFU = model FLOPs per step / step time (without the selector's share; mfu_with_agent
with it) / peak FLOP/s, where model FLOPs per step
= B * L * (N_T * f_T + 3 * M * f_S), f = 8 H^2 + 4 H I + 4 L H per token and layer
(QKV, attention output and FFN matmuls, and the two attention products, over the
padded length; backward = 2x forward; embeddings, pooler, classifier and losses left
out), peak = 989 TFLOP/s dense bf16 on H100 SXM and H200 (--peak-tflops for others).

Output: one JSON line per measurement on stdout and appended to --out, in this
order: 'machine'; 'ours' per variant (step time, alone and with a host sync per step as in run.py;
seq/s, parts, MFU, warm-up, recompiles after warm-up), each followed with --profile by its
'profile' lines (the step; outside CUDA graphs also the losses alone and the selector's phase end:
kernels, device busy time); 'losses' (spec vs fused: time, agreement); 'baseline' per baseline
variant; 'summary' (ours / baseline seq/s).
"""
import argparse
import datetime
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's kd_ref, installed or not
from kd_ref import losses  # noqa: E402
from kd_ref.agent import AgentConfig, KnowledgeSelectionAgent
from kd_ref.bert import Bert, BertConfig
from kd_ref.data.batching import Batch
from kd_ref.fused import make_fused_loss
from kd_ref.optim import make_optimizer
from kd_ref.plumbing.compiled import MALLOPT, compile_counts, compile_mode, compile_model, keep_freed_memory, use_tf32
from kd_ref.student import build_student, default_layers, layer_map, make_projections

ROOT = Path(__file__).resolve().parents[1]
BASELINE = Path(os.environ.get("KD_BASELINE", ROOT.parent / "shared" / "bench" / "hf_kd_baseline.py"))
TEACHERS = {"base": BertConfig(),  # bert-base
            "small": BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)}
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12}  # dense; fp32 runs as TF32 at half


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a("--teacher", choices=TEACHERS, help="default: base on CUDA, small on the CPU")
    a("--student-layers", type=int, help="default: 6 for base, 3 for small")
    a("--dtype", choices=["bf16", "fp32"], help="default: bf16 on CUDA, fp32 on the CPU")
    a("--batch", type=int, help="default: 32 on CUDA, 8 on the CPU")
    a("--seq", type=int, default=128)
    a("--variants", default="eager,compiled",
      help="of eager, compiled, cudagraphs (compiled + CUDA graphs, as run.py --cuda-graphs)")
    a("--baseline-variants", help="of the baseline's eager, compiled, each optionally +keep (run with "
                                   "the allocator setting ours uses on the CPU); 'none' to skip. Default: "
                                   "eager,compiled on CUDA; eager,eager+keep on the CPU (its compile takes minutes)")
    a("--malloc", choices=["keep", "default"], default="keep",
      help="CPU: 'keep' = kd_ref.plumbing.compiled.keep_freed_memory, as run.py does; 'default' = glibc's own")
    a("--attk", action="store_true", help="add AttK (attention maps in the mapped layers), as the baseline does")
    a("--warmup", type=int, default=3, help="steps before timing; the first compiles")
    a("--steps", type=int, default=10, help="steps per timed repeat")
    a("--repeats", type=int, default=3, help="timed repeats; the median is reported")
    a("--steps-per-phase", type=int, default=20,
      help="steps the selector's per-phase work is spread over (RTE, batch 32, 4 phases per epoch: ~20)")
    a("--peak-tflops", type=float, help="peak FLOP/s of the device in TFLOP/s, for MFU")
    a("--out", help="also append the JSON lines to this file")
    a("--profile", metavar="DIR", help="also profile --profile-steps steps of each variant, the losses alone and "
                                      "the selector's phase end (torch.profiler): a 'profile' JSON line each, "
                                      "and in DIR the op table "
                                      "(profile-TEACHER-VARIANT-PART.txt) and the trace (.trace.json.gz)")
    a("--profile-steps", type=int, default=5)
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.teacher = args.teacher or ("base" if cuda else "small")
    args.student_layers = args.student_layers or default_layers(TEACHERS[args.teacher].num_hidden_layers)
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    args.batch = args.batch or (32 if cuda else 8)
    args.baseline_variants = args.baseline_variants or ("eager,compiled" if cuda else "eager,eager+keep")
    known = {"none"} | {kind + keep for kind in ("eager", "compiled") for keep in ("", "+keep")}
    if unknown := set(args.baseline_variants.split(",")) - known:
        p.error(f"--baseline-variants: {', '.join(sorted(unknown))} not among {', '.join(sorted(known))}")
    return args


def emit(record: dict, out: str | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def machine(args) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"what": "machine", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([sys.executable.split("/")[-1], *sys.argv]), "host": platform.node(),
            "cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "torch": torch.__version__, "python": platform.python_version(), "load_avg": os.getloadavg(),
            "malloc_keep_freed": args.malloc_kept}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, device, steps: int, repeats: int) -> float:
    """Median over repeats of the mean time of `steps` calls, in ms (the baseline's method)."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        sync(device)
        times.append((time.perf_counter() - t0) / steps * 1e3)
    return sorted(times)[len(times) // 2]


def model_flops(t: BertConfig, s: BertConfig, batch: int, seq: int) -> float:
    def per_token(c):
        return c.num_hidden_layers * (8 * c.hidden_size ** 2 + 4 * c.hidden_size * c.intermediate_size
                                      + 4 * seq * c.hidden_size)
    return batch * seq * (per_token(t) + 3 * per_token(s))


def peak_flops(args) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if not args.device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16.items() if all(w in name for w in k.split())), None)
    return peak and (peak if args.dtype == "bf16" else peak / 2)


def make_batch(args, device) -> Batch:
    ids = torch.randint(1000, 30000, (args.batch, args.seq))
    mask = torch.ones_like(ids)
    mask[: args.batch // 2, args.seq * 3 // 4:] = 0
    return Batch(ids, mask, torch.zeros_like(ids), torch.randint(0, 2, (args.batch,)),
                 torch.arange(args.batch), torch.ones(args.batch, dtype=torch.bool),
                 torch.ones(args.batch, dtype=torch.bool)).to(device)


def spec_loss(logits_s, logits_t, labels, valid, attention_mask, hs, ht, weights, temperature, *,
              feak_mode, regression, scores_s=(), scores_t=(), attk_weight=None):
    """The eager losses of kd_ref/losses.py summed as distill.knowledge_losses does (tokens FeaK)."""
    mask = attention_mask * valid[:, None]
    raw = [losses.fink(logits_s, labels, valid), losses.resk(logits_s, logits_t, valid, temperature),
           losses.feak(hs[1:], ht[1:], mask), losses.relk(hs, ht, mask)]
    total = sum(w * r for w, r in zip(weights, raw))
    if attk_weight is not None:
        raw.append(losses.attk(list(scores_s), list(scores_t), mask))
        total = total + attk_weight * raw[-1]
    return total, torch.stack(raw).detach()


class Setup:
    """Teacher, student, optimizer and loss of one variant, and the step they make."""

    def __init__(self, args, variant: str, device):
        torch.manual_seed(0)
        self.args, self.device = args, device
        self.t_cfg = TEACHERS[args.teacher]
        self.teacher = Bert(self.t_cfg).to(device).eval()
        self.g = layer_map(self.t_cfg.num_hidden_layers, args.student_layers)
        self.student = build_student(self.teacher, args.student_layers, None, "teacher", self.g).to(device).train()
        self.projections = make_projections(self.student.config.hidden_size, self.t_cfg.hidden_size,
                                            len(self.g)).to(device)
        self.params = [*self.student.parameters(), *self.projections.parameters()]
        self.opt, self.sched = make_optimizer(self.params, 5e-5, 0.01, 10 ** 6, 0.1)
        self.cudagraphs = variant == "cudagraphs"  # as run.py --cuda-graphs: the models and the loss
        if variant != "eager":
            for model in (self.teacher, self.student):
                compile_model(model, mode=compile_mode(self.cudagraphs))
        self.loss_fn = make_fused_loss(compile=variant != "eager", mode=compile_mode(self.cudagraphs))
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
        self.weights = torch.ones(4, device=device)
        self.temperature = torch.tensor(1.0, device=device)
        self.attk_weight = torch.tensor(1.0, device=device) if args.attk else None
        self.t_layers = self.g[1:] if args.attk else ()
        self.s_layers = tuple(range(1, args.student_layers + 1)) if args.attk else ()
        self.sums = torch.zeros(5 if args.attk else 4, device=device)  # per-phase loss sums, kept on device

    def teacher_forward(self, b):
        with torch.no_grad(), self.autocast:
            return self.teacher(b.input_ids, b.attention_mask, b.token_type_ids, output_hidden_states=True,
                                attention_layers=self.t_layers)

    def student_forward(self, b):
        with self.autocast:
            return self.student(b.input_ids, b.attention_mask, b.token_type_ids, output_hidden_states=True,
                                attention_layers=self.s_layers)

    def loss_inputs(self, b, s, t):
        return ((s.logits, t.logits.float(), b.labels, b.valid, b.attention_mask,
                 [w(h) for w, h in zip(self.projections, s.hidden_states)], [t.hidden_states[i] for i in self.g],
                 self.weights, self.temperature),
                dict(feak_mode="tokens", regression=False, scores_s=[s.scores[i] for i in self.s_layers],
                     scores_t=[t.scores[i] for i in self.t_layers], attk_weight=self.attk_weight))

    def loss(self, fn, args, kwargs):
        with self.autocast:
            return fn(*args, **kwargs)

    def optimizer_step(self):
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()

    def step(self, b):
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        t = self.teacher_forward(b)
        s = self.student_forward(b)
        total, raw = self.loss(self.loss_fn, *self.loss_inputs(b, s, t))
        total.backward()
        self.optimizer_step()
        self.opt.zero_grad(set_to_none=True)
        self.sums += raw  # no host sync per step: the loop reads the sums once per phase


def agent_phase(setup: Setup):
    """A function doing the selector's work at one phase boundary (ksm-soft), a new phase each call:
    state from the [CLS] vectors (a device sync), action, exploration reward, one learning round
    (updates_per_phase updates)."""
    args, device = setup.args, setup.device
    widths = setup.student.config.hidden_size, setup.t_cfg.hidden_size
    agent = KnowledgeSelectionAgent(*widths, AgentConfig(), seed=0)
    state = agent.raw_state(torch.randn(args.batch, widths[0]), torch.randn(args.batch, widths[1]), 0.0)
    phases = 0

    def phase():
        nonlocal state, phases
        s_cls, t_cls = (torch.randn(args.batch, w, device=device) for w in widths)
        next_state = agent.raw_state(s_cls, t_cls, phases / 100)
        action = agent.act(next_state, explore=True)
        setup.weights.copy_(action)
        agent.observe(state, action, 0.01, next_state, done=False)
        sync(device)
        state, phases = next_state, phases + 1
    return phase


def agent_phase_ms(setup: Setup, repeats: int = 5) -> float:
    phase, times = agent_phase(setup), []
    for _ in range(repeats):
        t0 = time.perf_counter()
        phase()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def bench_ours(args, variant: str, device, b) -> tuple[dict, Setup]:
    setup = Setup(args, variant, device)
    before = compile_counts()
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        setup.step(b)
    sync(device)
    warmup_s = time.perf_counter() - t0
    warm = compile_counts()
    step_ms = median_ms(lambda: setup.step(b), device, args.steps, args.repeats)
    # run.py's loop reads each step's loss on the host (its non-finite check, the progress line): the host
    # then waits for the device at every step and cannot queue the next step while this one runs
    synced_ms = median_ms(lambda: (setup.step(b), setup.sums.sum().item()), device, args.steps, args.repeats)
    after = compile_counts()
    agent_ms = agent_phase_ms(setup)
    total_ms = step_ms + agent_ms / args.steps_per_phase
    record = {"what": "ours", "variant": variant, "device": device.type, "dtype": args.dtype,
              "teacher": args.teacher, "student_layers": args.student_layers, "batch": args.batch,
              "seq": args.seq, "attk": args.attk, "step_ms": round(step_ms, 3),
              "step_ms_host_sync": round(synced_ms, 3),
              "agent_ms_per_phase": round(agent_ms, 3), "step_ms_with_agent": round(total_ms, 3),
              "seq_per_s": round(args.batch / total_ms * 1e3, 1),
              "seq_per_s_no_agent": round(args.batch / step_ms * 1e3, 1), "warmup_s": round(warmup_s, 1),
              "graphs_compiled_in_warmup": warm["graphs"] - before["graphs"],
              "recompiles_after_warmup": after["graphs"] - warm["graphs"],
              "eager_fallbacks": after["eager_fallbacks"] - before["eager_fallbacks"], "load_avg": os.getloadavg()}
    peak = peak_flops(args)
    if peak:
        flops = model_flops(setup.t_cfg, setup.student.config, args.batch, args.seq)
        record.update(model_tflop_per_step=round(flops / 1e12, 3), mfu=round(flops / (step_ms / 1e3) / peak, 4),
                      mfu_with_agent=round(flops / (total_ms / 1e3) / peak, 4))
    if not setup.cudagraphs:  # parts run pieces of the step alone, which CUDA graph trees do not expect
        record["parts_ms"] = parts_ms(setup, b, step_ms)
        record["loss_share"] = round(record["parts_ms"]["losses"] / step_ms, 4)
    return record, setup


def profile(setup: Setup, b, variant: str, directory: str) -> list[dict]:
    """Where the step's time goes: torch.profiler over --profile-steps steps, then (outside CUDA graphs)
    over as many forward + backward passes of the loss alone and as many phase ends of the selector
    (agent_phase: host work). Per call: the wall time, the kernels launched and
    the time the device spent in them (kernel events of the exported trace, which on one stream do not
    overlap). busy_share well under 1 means the device waits for the host (launches, Python,
    guards), where CUDA graphs help; near 1, the kernels themselves are the cost.
    Writes the op table (sorted by device time; CPU time on the CPU and for the agent) and the gzipped
    Chrome trace."""
    args, device = setup.args, setup.device
    kinds = torch.profiler.ProfilerActivity
    acts = [kinds.CPU] + ([kinds.CUDA] if device.type == "cuda" else [])
    parts = {"step": lambda: setup.step(b)}
    if not setup.cudagraphs:  # pieces run alone only outside CUDA graph trees, as in parts_ms
        loss_args, kwargs = loss_leaves(setup, b, setup.student_forward(b), setup.teacher_forward(b))
        parts["losses"] = lambda: setup.loss(setup.loss_fn, loss_args, kwargs)[0].backward()
        parts["agent"] = agent_phase(setup)  # a phase, not a step: the same in every variant
    records = []
    for part, fn in parts.items():
        fn()
        sync(device)
        with torch.profiler.profile(activities=acts) as prof:
            t0 = time.perf_counter()
            for _ in range(args.profile_steps):
                fn()
            sync(device)
            wall_ms = (time.perf_counter() - t0) / args.profile_steps * 1e3
        stem = Path(directory) / f"profile-{args.teacher}-{variant}-{part}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(stem.with_suffix(".trace.json.gz")))  # torch gzips a .gz path
        with gzip.open(stem.with_suffix(".trace.json.gz"), "rt") as f:
            trace = json.load(f)
        kernels = [e for e in trace.get("traceEvents", []) if e.get("cat") == "kernel"]
        busy_ms = sum(e.get("dur", 0) for e in kernels) / 1e3 / args.profile_steps
        sort = "self_device_time_total" if device.type == "cuda" and part != "agent" else "self_cpu_time_total"
        stem.with_suffix(".txt").write_text(prof.key_averages().table(sort_by=sort, row_limit=40) + "\n")
        records.append({"what": "profile", "variant": variant, "part": part, "teacher": args.teacher,
                        "student_layers": args.student_layers, "batch": args.batch, "seq": args.seq,
                        "steps": args.profile_steps, "wall_ms": round(wall_ms, 3),
                        "kernels_per_step": len(kernels) / args.profile_steps, "device_busy_ms": round(busy_ms, 3),
                        "busy_share": round(busy_ms / wall_ms, 4) if kernels else None,
                        "files": str(stem) + ".{txt,trace.json.gz}"})
    return records


def parts_ms(setup: Setup, b, step_ms: float) -> dict:
    """Each part of the step timed alone; student backward is what the others leave of the step."""
    args, device = setup.args, setup.device

    def timed(fn):
        return round(median_ms(fn, device, args.steps, args.repeats), 3)
    t, s = setup.teacher_forward(b), setup.student_forward(b)
    loss_args, kwargs = loss_leaves(setup, b, s, t)

    def loss_fwd_bwd():
        setup.loss(setup.loss_fn, loss_args, kwargs)[0].backward()
    parts = {"teacher_forward": timed(lambda: setup.teacher_forward(b)),
             "student_forward": timed(lambda: setup.student_forward(b)),
             "losses": timed(loss_fwd_bwd)}
    setup.loss(setup.loss_fn, *setup.loss_inputs(b, s, t))[0].backward()  # gradients for the optimizer to use
    parts["optimizer"] = timed(setup.optimizer_step)
    setup.opt.zero_grad(set_to_none=True)
    parts["student_backward"] = round(step_ms - sum(parts.values()), 3)
    setup.student.eval()
    with torch.no_grad():
        parts["student_eval"] = timed(lambda: setup.student_forward(b))
    setup.student.train()
    return parts


def loss_leaves(setup: Setup, b, s, t):
    """The loss inputs of one step, detached: student tensors become leaves that want gradients."""
    loss_args, kwargs = setup.loss_inputs(b, s, t)

    def leaf(x):
        return x.detach().requires_grad_(x.requires_grad) if torch.is_tensor(x) else x
    loss_args = [[leaf(x) for x in a] if isinstance(a, list) else leaf(a) for a in loss_args]
    kwargs = {k: [leaf(x) for x in v] if isinstance(v, list) else v for k, v in kwargs.items()}
    return loss_args, kwargs


def bench_losses(args, setup: Setup, b) -> dict:
    """Spec (kd_ref/losses.py, as distill.py sums them) against the fused loss, eager and compiled
    (on CUDA also as a CUDA graph, as run.py --cuda-graphs runs it: the loss's share of the
    cudagraphs step): forward + backward on the same inputs in the run's dtype; then how far the
    compiled fused values are from the spec's in plain fp32 (no autocast, no TF32), per loss."""
    device = setup.device
    loss_args, kwargs = loss_leaves(setup, b, setup.student_forward(b), setup.teacher_forward(b))
    fns = {"spec": spec_loss, "fused_eager": make_fused_loss(False), "fused_compiled": make_fused_loss(True)}
    if device.type == "cuda":  # on the CPU, mode reduce-overhead compiles the same loss again, without graphs
        fns["fused_cudagraphs"] = make_fused_loss(True, mode=compile_mode(True))
    record = {"what": "losses", "device": device.type, "dtype": args.dtype, "teacher": args.teacher,
              "batch": args.batch, "seq": args.seq, "attk": args.attk}
    for name, fn in fns.items():
        def fwd_bwd():
            if name == "fused_cudagraphs":
                torch.compiler.cudagraph_mark_step_begin()
            setup.loss(fn, loss_args, kwargs)[0].backward()
        fwd_bwd()  # warm-up (compiles)
        record[name + "_ms"] = round(median_ms(fwd_bwd, device, args.steps, args.repeats), 3)
    tf32, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    spec, fused = [fns[k](*loss_args, **kwargs)[1].double() for k in ("spec", "fused_compiled")]
    torch.backends.cuda.matmul.allow_tf32 = tf32
    record["raw_spec_fp32"] = spec.tolist()
    record["fused_rel_diff_fp32"] = ((fused - spec).abs() / spec.abs()).tolist()
    return record


def bench_baseline(args, variant: str) -> dict:
    """The yardstick in its own process; variant 'eager+keep' runs it with the environment
    form of keep_freed_memory's settings (MALLOC_MMAP_MAX_, MALLOC_TRIM_THRESHOLD_)."""
    kind, _, keep = variant.partition("+")
    env = {**os.environ, **({f"MALLOC_{name[2:]}_": str(value) for name, (_, value) in MALLOPT.items()}
                            if keep else {})}
    cmd = [sys.executable, str(BASELINE), "--device", args.device, "--dtype", args.dtype, "--batch", str(args.batch),
           "--seq", str(args.seq), "--student-layers", str(args.student_layers), "--variants", kind,
           "--warmup", str(args.warmup), "--steps", str(args.steps), "--repeats", str(args.repeats)]
    if args.teacher == "small":
        cmd.append("--small")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        return {"what": "baseline", "variant": variant, "error": done.stderr[-2000:]}
    return {"what": "baseline", **json.loads(done.stdout.strip().splitlines()[-1]), "malloc_keep_freed": bool(keep),
            "load_avg": os.getloadavg()}


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        use_tf32()
    args.malloc_kept = device.type == "cpu" and args.malloc == "keep" and keep_freed_memory()
    emit(machine(args), args.out)
    results = {}
    b = make_batch(args, device)
    loss_setup = None  # the losses are compared on the first variant without CUDA graphs
    for variant in args.variants.split(","):
        try:
            record, setup = bench_ours(args, variant, device, b)
            loss_setup = loss_setup or (None if setup.cudagraphs else setup)
        except Exception as e:  # one variant failing (say CUDA graphs) must not lose the others
            record, setup = {"what": "ours", "variant": variant, "error": f"{type(e).__name__}: {e}"[:2000]}, None
        results[variant] = record
        emit(record, args.out)
        if args.profile and setup is not None:
            try:
                lines = profile(setup, b, variant, args.profile)
            except Exception as e:
                lines = [{"what": "profile", "variant": variant, "error": f"{type(e).__name__}: {e}"[:2000]}]
            for line in lines:
                emit(line, args.out)
    if loss_setup is not None:
        emit(bench_losses(args, loss_setup, b), args.out)
    setup = loss_setup = None  # free the device for the baseline's process
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for variant in [v for v in args.baseline_variants.split(",") if v != "none"]:
        results["baseline_" + variant] = record = bench_baseline(args, variant)
        emit(record, args.out)
    summary = {"what": "summary", "load_avg": os.getloadavg()}
    for ours in args.variants.split(","):
        for base in [k for k in results if k.startswith("baseline_")]:
            if "seq_per_s" in results[ours] and "seq_per_s" in results.get(base, {}):
                summary[f"{ours}/{base}"] = round(results[ours]["seq_per_s"] / results[base]["seq_per_s"], 2)
    emit(summary, args.out)


if __name__ == "__main__":
    main()
