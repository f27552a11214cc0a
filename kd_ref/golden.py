"""The golden trace of PORTING.md: two KD steps and three agent updates on tiny models, as numbers.

A port (JAX, MLX, another trainer) that computes these numbers from the same weights and
inputs computes what kd-ref computes. Everything here goes through the library's own
functions (kd_ref.bert, losses, fused, optim, agent, distill), so the trace is the library's
behaviour, not a second description of it; when the library changes on purpose, regenerate
tests/golden/expected.json with the command in PORTING.md.

    python -m kd_ref.golden OUT

writes into OUT: teacher/ and student/ (Hugging Face folders), projections.safetensors and
agent.safetensors (the other trained weights), tensors.safetensors (inputs and every
intermediate tensor, full precision) and trace.json (scalars, and a checksum of each tensor:
shape, sum, abs-sum, max-abs, first entries, rounded to 7 significant digits). Dropout is off
(eval mode) and nothing random is left to the consumer: the minibatches the agent replays are
written out. Deterministic: two runs on one CPU give the same bytes.

The second KD step and the second agent update show the optimizers' betas (a first step from a zero
state is blind to them); the target networks are moved off the online ones (seeded equal, they would
hide a TD target taken from the online networks); a ksm-hard update traces the binary path.
"""
import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import safetensors.torch
import torch

from kd_ref import fused, losses
from kd_ref.agent import AgentConfig, KnowledgeSelectionAgent
from kd_ref.bert import Bert, BertConfig
from kd_ref.distill import DistillConfig, LossNorm, applied_weights, phase_bounds
from kd_ref.optim import make_optimizer
from kd_ref.plumbing.checkpoint import hf_names, save_bert
from kd_ref.student import layer_map, make_projections

SEED = 20260101
# Odd, different widths (a transposed weight or a wrong projection cannot go unnoticed), equal
# head counts (AttK pairs heads), N = 5 over M = 2 layers: g(1) = 2.5 rounds half up to 3.
TEACHER = BertConfig(vocab_size=23, hidden_size=15, num_hidden_layers=5, num_attention_heads=3,
                     intermediate_size=28, max_position_embeddings=11, num_labels=3)
STUDENT = replace(TEACHER, hidden_size=9, num_hidden_layers=2, intermediate_size=17)
# Rows: two segments (6 tokens), padding (4 of 6), two segments and padding (5 of 6), and a
# filler row (a copy of row 1, valid False) as kd_ref.data.batching fills a bucket's last batch.
INPUT_IDS = [[2, 7, 11, 3, 5, 3], [2, 13, 9, 3, 0, 0], [2, 19, 3, 21, 3, 0], [2, 13, 9, 3, 0, 0]]
TOKEN_TYPES = [[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]]
LENGTHS, VALID = [6, 4, 5, 4], [True, True, True, False]
LABELS, SCORES = [2, 0, 1, 0], [0.5, -1.25, 2.0, -1.25]  # classification; regression (STS-B form)
TEMPERATURE = 2.0  # not 1, so that a missing T^2 shows
ACTION = [0.9, 0.3, 0.6, 0.2]  # (FinK, ResK, FeaK, RelK) as a soft selector chooses it
ACTION_2 = [0.1, 0.8, 0.2, 0.7]  # the second step's, as a new phase's: its gradient is not the first's
ATTK_WEIGHT = 0.5
LR, WEIGHT_DECAY, TOTAL_STEPS, WARMUP, MAX_GRAD_NORM = 1e-2, 0.1, 10, 0.25, 1.0
PROGRESS = 0.375  # t / T_total of the agent's state
AGENT = AgentConfig(hidden=7, replay_batch=6)
# move_targets' seed, chosen among the first few so that the hard TD target forces FinK on for one next
# state (buffer row 2, in the first minibatch) and no target actor output lies within 0.07 of the
# threshold, where a port's rounding could flip it; _generate checks both.
TARGET_SEED = SEED + 37
# The hand-picked gradient entries a port checks by finite differences (HF names).
GRAD_ENTRIES = [("classifier.bias", (1,)), ("bert.pooler.dense.weight", (4, 2)),
                ("bert.encoder.layer.0.attention.self.key.weight", (5, 1)),
                ("bert.encoder.layer.1.output.LayerNorm.weight", (3,)),
                ("bert.embeddings.position_embeddings.weight", (2, 6)),
                ("bert.embeddings.LayerNorm.bias", (0,)), ("projections.1.weight", (11, 4))]


def round7(x: float) -> float:
    return float(f"{x:.7g}")


def summary(t: torch.Tensor) -> dict:
    """A tensor as a few numbers (sums in fp64): enough to catch a difference, small enough for git."""
    t64 = t.detach().double()
    return {"shape": list(t.shape), "sum": round7(t64.sum().item()), "abs_sum": round7(t64.abs().sum().item()),
            "max_abs": round7(t64.abs().max().item()), "first": [round7(v) for v in t64.flatten()[:4].tolist()]}


def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Weights of order one, LayerNorm scales around 1, nonzero biases: an init with zero biases and
    unit LayerNorms would hide a port that drops a bias or swaps gamma and beta."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1 + 0.2 * noise if "norm.weight" in name else 0.4 * noise)


def inputs() -> dict:
    mask = torch.tensor([[int(i < n) for i in range(6)] for n in LENGTHS])
    return {"input_ids": torch.tensor(INPUT_IDS), "token_type_ids": torch.tensor(TOKEN_TYPES),
            "attention_mask": mask, "valid": torch.tensor(VALID), "labels": torch.tensor(LABELS),
            "labels_regression": torch.tensor(SCORES)}


def forward(name: str, model: Bert, x: dict, layers, tensors: dict, trace: dict):
    """One eval-mode forward; its hidden states, attention of `layers`, pooled output and logits traced."""
    out = model(x["input_ids"], x["attention_mask"], x["token_type_ids"], output_hidden_states=True,
                attention_layers=layers)
    named = {"embeddings": out.hidden_states[0],
             **{f"layer.{l}": h for l, h in enumerate(out.hidden_states[1:], start=1)},
             **{f"scores.{l}": s for l, s in out.scores.items()},
             **{f"probs.{l}": p for l, p in out.attentions.items()},
             "pooled": torch.tanh(model.pooler(out.hidden_states[-1][:, 0])), "logits": out.logits}
    for key, t in named.items():
        tensors[f"{name}.{key}"] = t.detach().clone()
        trace[f"{name}.{key}"] = summary(t)
    return out


def knowledge_losses(out_s, out_t, hs, ht, x, g) -> dict:
    """Every loss of losses.py (and fused.py's Gram form of RelK) on the traced forward."""
    valid, mask = x["valid"], x["attention_mask"] * x["valid"][:, None]
    length, width = ht[0].shape[1:]
    if not fused.gram_is_cheaper(length, width, len(g) - 1):
        raise AssertionError("the golden shapes must make relk_fast take its Gram form")
    z_s, z_t = out_s.logits, out_t.logits
    return {"fink": losses.fink(z_s, x["labels"], valid),
            "fink_regression": losses.fink(z_s[:, :1], x["labels_regression"], valid),
            "resk": losses.resk(z_s, z_t, valid, TEMPERATURE),
            "resk_regression": losses.resk(z_s[:, :1], z_t[:, :1], valid),
            "feak": losses.feak(hs[1:], ht[1:], mask),
            "feak_cls": losses.feak_cls([h[:, 0] for h in hs[1:]], [h[:, 0] for h in ht[1:]], valid),
            "relk": losses.relk(hs, ht, mask),
            "relk_gram": fused.relk_fast(hs, ht, mask),
            "attk": losses.attk([out_s.scores[i] for i in range(1, len(g))], [out_t.scores[l] for l in g[1:]], mask)}


def hf_views(student: Bert, projections) -> dict:
    """HF name -> (parameter, chunk, chunks): the student's tensors under their HF names, where q, k
    and v are chunks 0, 1, 2 of our fused qkv along the output dim; then the projections."""
    ours = dict(student.named_parameters())
    views = {hf: (ours[name], i, len(parts))
             for name, parts in hf_names(student.config.num_hidden_layers).items() for i, hf in enumerate(parts)}
    views.update({f"projections.{n}": (p, 0, 1) for n, p in projections.named_parameters()})
    return views


def train_step(student, projections, out_t, x, g, tensors: dict, trace: dict) -> None:
    """Two KD steps as distill.train_student takes them: weighted losses, backward, clip, AdamW,
    schedule. The second takes the same batch with another action (ACTION_2, as at the start of a new
    phase) from where the first left the weights and AdamW's state. From a zero state AdamW moves each
    entry by about lr * sign(g) whatever its betas, and on a gradient equal to the first they would
    cancel again: only a second step on another gradient shows them (`step_2`)."""
    views = hf_views(student, projections)
    params = [*student.parameters(), *projections.parameters()]
    opt, sched = make_optimizer(params, LR, WEIGHT_DECAY, TOTAL_STEPS, WARMUP)
    for key, suffix, action in (("step", "", ACTION), ("step_2", "_2", ACTION_2)):
        weights = applied_weights(torch.tensor(action), SimpleNamespace(chooses=True), DistillConfig())
        out_s = student(x["input_ids"], x["attention_mask"], x["token_type_ids"], output_hidden_states=True,
                        attention_layers=range(1, len(g)))
        hs = [w(h) for w, h in zip(projections, out_s.hidden_states)]
        total, raw = fused.fused_kd_loss(
            out_s.logits, out_t.logits, x["labels"], x["valid"], x["attention_mask"], hs,
            [out_t.hidden_states[l] for l in g], weights, torch.tensor(TEMPERATURE), feak_mode="tokens",
            regression=False, scores_s=[out_s.scores[i] for i in range(1, len(g))],
            scores_t=[out_t.scores[l] for l in g[1:]], attk_weight=torch.tensor(ATTK_WEIGHT))
        weighted_sum = {"action": action, "applied": [round7(w) for w in weights.tolist()],
                        "attk_weight": ATTK_WEIGHT, "raw": [round7(r) for r in raw.tolist()], "total": round7(total.item())}
        if key == "step":
            trace["weighted_sum"] = weighted_sum
        total.backward()
        grads = {n: p.grad.chunk(k)[i].clone() for n, (p, i, k) in views.items()}
        lr = sched.get_last_lr()[0]
        norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        clipped = torch.sqrt(sum(p.grad.double().square().sum() for p in params))
        opt.step()
        sched.step()
        opt.zero_grad()
        after = {n: p.detach().chunk(k)[i].clone() for n, (p, i, k) in views.items()}
        tensors.update({f"grad{suffix}.{n}": t for n, t in grads.items()})
        tensors.update({f"after_step{suffix}.{n}": p for n, p in after.items()})
        trace[key] = {
            **({"weighted_sum": weighted_sum} if key == "step_2" else {}),
            "grad_norm": {n: round7(t.double().norm().item()) for n, t in grads.items()},
            "total_norm": round7(norm.item()), "clipped_norm": round7(clipped.item()), "lr": round7(lr),
            "grad_entries": {f"{n}{list(i)}": round7(grads[n][i].item()) for n, i in GRAD_ENTRIES},
            "after_step": {n: summary(p) for n, p in after.items()},
        }
    trace["step"]["schedule"] = schedule()


def loop_trace(raw: list[float]) -> dict:
    """The training loop's own arithmetic: where phases start, and --loss-norm ema's divisors."""
    norm, raws, divisors = LossNorm("ema"), [raw[:4], [2.0, 0.5, 4.0, 1.0], [1.0, 1.0, 1.0, 1.0]], []
    for r in raws:
        scale = norm.scale()
        divisors.append([round7(v) for v in (scale.tolist() if torch.is_tensor(scale) else [scale] * 4)])
        norm.update(torch.tensor(r))
    return {"phase_bounds": {"total_steps": TOTAL_STEPS, "phases": 4, "starts": phase_bounds(TOTAL_STEPS, 4)},
            "loss_norm": {"raw": raws, "divisor": divisors}}


def schedule() -> list[float]:
    """The learning rate of make_optimizer's schedule at every step of a TOTAL_STEPS run."""
    p = torch.zeros(1, requires_grad=True)
    opt, sched = make_optimizer([p], LR, WEIGHT_DECAY, TOTAL_STEPS, WARMUP)
    lrs = []
    for _ in range(TOTAL_STEPS):
        lrs.append(round7(sched.get_last_lr()[0]))
        opt.step()  # no gradient: a no-op that keeps LambdaLR's order check quiet
        sched.step()
    return lrs


def agent_trace(out_s, out_t, x, tensors: dict, trace: dict, agent_file: Path) -> None:
    """The KSM: its weights, a state, act and Q, the exploration rewards, and three updates: two of a
    ksm-soft agent (the second shows Adam's betas, as train_step's second step does) and one of a
    ksm-hard agent (binary actions, a thresholded TD target)."""
    s_dim, t_dim = STUDENT.hidden_size, TEACHER.hidden_size
    agent = KnowledgeSelectionAgent(s_dim, t_dim, AGENT, seed=SEED)
    hard = KnowledgeSelectionAgent(s_dim, t_dim, replace(AGENT, hard=True), seed=SEED)
    for a in (agent, hard):
        move_targets(a, torch.Generator().manual_seed(TARGET_SEED))
    safetensors.torch.save_file({k: v.contiguous() for k, v in agent.state_dict()["networks"].items()}, agent_file)
    state = KnowledgeSelectionAgent.raw_state(out_s.hidden_states[-1][:, 0], out_t.hidden_states[-1][:, 0],
                                              PROGRESS, x["valid"])
    action = agent.act(state, explore=False)
    proposals = torch.tensor([[0.2, 0.4, 0.5, 0.1], [0.7, 0.5, 0.500001, 0.2], [0.51, 0.9, 0.0, 1.0]])
    tensors["agent.raw_state"] = state
    t = {"raw_state": summary(state), "action": [round7(a) for a in action.tolist()],
         "q": round7(agent.q_value(state, action)), "q_at_ones": round7(agent.q_value(state, torch.ones(4))),
         "hard_action": hard.act(state, explore=False).tolist(),
         "hard_thresholded": {"proposals": [[round7(v) for v in row] for row in proposals.tolist()],
                              "applied": hard.applied(proposals).tolist()}}
    soft_history = [torch.tensor([0.2, 0.9, 0.4, 0.7]), torch.tensor([0.6, 0.1, 0.8, 0.3])]
    agent.history = soft_history
    hard.history = [torch.tensor(h) for h in ([1.0, 0, 1, 0], [0.0, 1, 1, 1], [1.0, 0, 1, 0])]
    t["explore"] = {"soft_history": [[round7(v) for v in h.tolist()] for h in soft_history], "soft_action": ACTION,
                    "soft": round7(agent.exploration_reward(torch.tensor(ACTION))),
                    "hard_history": [h.tolist() for h in hard.history], "hard_action": [1.0, 0, 1, 0],
                    "hard": round7(hard.exploration_reward(torch.tensor([1.0, 0, 1, 0])))}
    agent.history = hard.history = []
    agent.buffer = replay_buffer(s_dim + t_dim + 1)
    hard.buffer = {**agent.buffer, "action": hard.applied(agent.buffer["action"])}  # binary, as ksm-hard stores
    rewards = agent.learned_rewards()[0]  # (rewards, baselines, scale); the same for both: no action in it
    tensors.update({f"replay.{k}": v for k, v in agent.buffer.items()})
    tensors["replay.learned_reward"], tensors["replay_hard.action"] = rewards, hard.buffer["action"]
    t["update"] = {"learned_reward": [round7(r) for r in rewards.tolist()],
                   **agent_update(agent, rewards, "", tensors)}
    t["update_2"] = agent_update(agent, rewards, "_2", tensors)
    with torch.no_grad():  # the target actor before the update moves it
        mu_next = hard.target_actor(hard.target_encoder(hard.buffer["next_state"]))
    t["update_hard"] = agent_update(hard, rewards, "_hard", tensors)
    all_off = ~(mu_next > AGENT.threshold).any(-1)
    if not all_off[t["update_hard"]["index"]].any() or (mu_next - AGENT.threshold).abs().min() < 0.05:
        raise AssertionError("TARGET_SEED must make the hard TD target force FinK on, with a margin")
    trace["agent"] = t


def move_targets(agent: KnowledgeSelectionAgent, gen: torch.Generator) -> None:
    """Move every target parameter off its online copy by N(0, 0.5^2) noise, as targets stand after
    some learning. Seeded equal to the online networks, they would let a port that takes the TD target
    from the online networks pass; noise of order one also spreads the target actor's output, so the
    hard TD target has entries on both sides of the threshold and a next state with FinK forced on."""
    with torch.no_grad():
        for net in (agent.target_encoder, agent.target_actor, agent.target_critic):
            for p in net.parameters():
                p.add_(0.5 * torch.randn(p.shape, generator=gen))


def replay_buffer(raw_dim: int) -> dict:
    """Five transitions over three phase indices, the last one done."""
    gen = torch.Generator().manual_seed(SEED + 1)
    n = 5
    return {"state": torch.randn(n, raw_dim, generator=gen), "action": torch.rand(n, 4, generator=gen),
            "reward_task": torch.randn(n, generator=gen), "reward_explore": 0.1 * torch.rand(n, generator=gen),
            "phase": torch.tensor([0.0, 1, 0, 1, 2]), "next_state": torch.randn(n, raw_dim, generator=gen),
            "done": torch.tensor([0.0, 0, 0, 0, 1])}


def agent_update(agent: KnowledgeSelectionAgent, rewards, suffix: str, tensors: dict) -> dict:
    """One iteration of the agent's updates_per_phase on its buffer: the minibatch it draws (written
    out), the TD target and the action of the target policy in it, then the critic step, the actor
    step and the soft target update, with the gradients they took and every network after them."""
    index = agent.minibatch()
    next_state = agent.buffer["next_state"][index]
    with torch.no_grad():
        td_action = agent.applied(agent.target_actor(agent.target_encoder(next_state)))
    td_target = agent.td_target(rewards[index], next_state, agent.buffer["done"][index])
    critic_loss, actor_loss = agent.update(index, rewards)
    after = {k: v.detach().clone() for k, v in agent.state_dict()["networks"].items()}
    grads = {f"{part}.{k}": p.grad.clone() for part in ("encoder", "actor")
             for k, p in getattr(agent, part).named_parameters()}
    tensors[f"replay.index{suffix}"] = index
    tensors.update({f"agent_after{suffix}.{k}": v for k, v in after.items()})
    tensors.update({f"agent_grad{suffix}.{k}": v for k, v in grads.items()})
    return {"index": index.tolist(), "td_action": [[round7(v) for v in row] for row in td_action.tolist()],
            "td_target": [round7(y) for y in td_target.tolist()],
            "critic_loss": round7(critic_loss), "actor_loss": round7(actor_loss),
            "grad_norm": {k: round7(v.double().norm().item()) for k, v in grads.items()},
            "networks_after": {k: summary(v) for k, v in after.items()}}


def generate(out) -> dict:
    """Write the golden trace into the folder `out`; returns trace.json's content."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: no reduction order that depends on the machine's core count
    try:
        return _generate(out)
    finally:
        torch.set_num_threads(threads)


def _generate(out: Path) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)  # Bert's and the projections' own init; everything is then overwritten or saved
        gen = torch.Generator().manual_seed(SEED)
        teacher, student = Bert(TEACHER).eval(), Bert(STUDENT).eval()  # eval: dropout off
        randomize(teacher, gen)
        randomize(student, gen)
        g = layer_map(TEACHER.num_hidden_layers, STUDENT.num_hidden_layers)
        projections = make_projections(STUDENT.hidden_size, TEACHER.hidden_size, len(g))
    save_bert(teacher, out / "teacher")
    save_bert(student, out / "student")
    safetensors.torch.save_file({k: v.detach().contiguous() for k, v in projections.state_dict().items()},
                                out / "projections.safetensors")
    x = inputs()
    tensors = {f"input.{k}": v for k, v in x.items()}
    trace = {"command": "python -m kd_ref.golden OUT", "seed": SEED,
             "teacher": TEACHER.to_hf_dict(), "student": STUDENT.to_hf_dict(), "layer_map": g,
             "temperature": TEMPERATURE, "lr": LR, "weight_decay": WEIGHT_DECAY, "total_steps": TOTAL_STEPS,
             "warmup": WARMUP, "max_grad_norm": MAX_GRAD_NORM, "progress": PROGRESS, "agent_config": asdict(AGENT)}
    fwd = {}
    with torch.no_grad():
        out_t = forward("teacher", teacher, x, g[1:], tensors, fwd)
        out_s = forward("student", student, x, range(1, len(g)), tensors, fwd)
        hs = [w(h) for w, h in zip(projections, out_s.hidden_states)]
        ht = [out_t.hidden_states[l] for l in g]
        for i, h in enumerate(hs):
            tensors[f"projected.{i}"] = h.clone()
            fwd[f"projected.{i}"] = summary(h)
        trace["forward"] = fwd
        trace["losses"] = {k: round7(v.item()) for k, v in knowledge_losses(out_s, out_t, hs, ht, x, g).items()}
    train_step(student, projections, out_t, x, g, tensors, trace)
    trace["loop"] = loop_trace(trace["weighted_sum"]["raw"])
    agent_trace(out_s, out_t, x, tensors, trace, out / "agent.safetensors")
    safetensors.torch.save_file({k: v.detach().contiguous() for k, v in tensors.items()}, out / "tensors.safetensors")
    (out / "trace.json").write_text(json.dumps(trace, indent=1) + "\n")
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m kd_ref.golden", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write the trace into (created)")
    args = parser.parse_args()
    generate(args.out)
    print(f"{args.out}/trace.json")


if __name__ == "__main__":
    main()
