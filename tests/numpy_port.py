"""kd-ref ported to NumPy from PORTING.md alone: the proof that PORTING.md and the golden trace suffice.

Written from the document, not from the torch code, and in a NumPy idiom (fp64, HF tensor
names, no fused q/k/v), the way a porter would: if this matches the trace to 1e-5, a port that
follows PORTING.md can be checked the same way. tests/test_golden.py runs it against the trace
that `python -m kd_ref.golden OUT` writes. No torch here.

Covered: the BERT forward, every loss and the weighted sum, the schedule, clipping and two AdamW
steps (from the traced gradients, which finite differences of `step_loss` check), and the agent:
state, act, Q, exploration and learned rewards, and its updates (two soft, one hard) with a
hand-written backward.
"""
import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

N_KNOWLEDGE = 4
BETAS = (0.9, 0.999)  # Adam's and AdamW's, for the student and the agent alike
FP32_MIN = float(np.finfo(np.float32).min)  # the additive mask value: finite, so no NaN on an all-padding row


def load(folder) -> dict:
    """Everything the golden command wrote: trace.json, the tensors and the weights, as fp64 arrays."""
    folder = Path(folder)

    def arrays(path):
        return {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in load_file(path).items()}

    return {"trace": json.loads((folder / "trace.json").read_text()), "tensors": arrays(folder / "tensors.safetensors"),
            "teacher": arrays(folder / "teacher" / "model.safetensors"),
            "teacher_config": json.loads((folder / "teacher" / "config.json").read_text()),
            "student": arrays(folder / "student" / "model.safetensors"),
            "student_config": json.loads((folder / "student" / "config.json").read_text()),
            "projections": arrays(folder / "projections.safetensors"), "agent": arrays(folder / "agent.safetensors")}


# ---- the encoder ------------------------------------------------------------------------------

def linear(x, p, name):
    """PyTorch / HF layout: weight [out, in], y = x W^T + b."""
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def layer_norm(x, p, name, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)  # biased variance
    return (x - mean) / np.sqrt(var + eps) * p[name + ".weight"] + p[name + ".bias"]


_erf = np.vectorize(math.erf)


def gelu(x):
    """Exact GELU, x * Phi(x); not the tanh approximation."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def bert(p, config, ids, types, mask):
    """Eval-mode BertForSequenceClassification: (hidden states [emb, layer 1..N], pre-softmax scores per
    layer without the mask, attention probabilities per layer, pooled output, logits)."""
    eps, heads = config["layer_norm_eps"], config["num_attention_heads"]
    B, L = ids.shape
    e = "bert.embeddings."
    x = p[e + "word_embeddings.weight"][ids] + p[e + "position_embeddings.weight"][:L] \
        + p[e + "token_type_embeddings.weight"][types]
    x = layer_norm(x, p, e + "LayerNorm", eps)
    H = x.shape[-1]
    d = H // heads
    hidden, scores, probs = [x], [], []
    for l in range(config["num_hidden_layers"]):
        a = f"bert.encoder.layer.{l}."
        q, k, v = (linear(x, p, a + "attention.self." + n).reshape(B, L, heads, d).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
        att = softmax(np.where(mask[:, None, None, :] > 0, s, FP32_MIN))
        context = (att @ v).transpose(0, 2, 1, 3).reshape(B, L, H)
        x = layer_norm(x + linear(context, p, a + "attention.output.dense"), p, a + "attention.output.LayerNorm", eps)
        ffn = linear(gelu(linear(x, p, a + "intermediate.dense")), p, a + "output.dense")
        x = layer_norm(x + ffn, p, a + "output.LayerNorm", eps)
        hidden.append(x)
        scores.append(s)
        probs.append(att)
    pooled = np.tanh(linear(x[:, 0], p, "bert.pooler.dense"))
    return hidden, scores, probs, pooled, linear(pooled, p, "classifier")


def layer_map(n_teacher, n_student):
    """g(i) = floor(i N / M + 1/2): halves round up."""
    return [math.floor(i * n_teacher / n_student + 0.5) for i in range(n_student + 1)]


def project(hidden, proj):
    return [linear(h, proj, f"{i}") for i, h in enumerate(hidden)]


# ---- the losses ---------------------------------------------------------------------------------

def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def valid_mean(per_example, valid):
    return per_example[valid].sum() / max(valid.sum(), 1)


def fink(logits, labels, valid):
    if logits.shape[-1] == 1:
        return valid_mean((logits[:, 0] - labels) ** 2, valid)
    labels = np.where(valid, labels, 0).astype(int)
    return valid_mean(-log_softmax(logits)[np.arange(len(labels)), labels], valid)


def resk(z_s, z_t, valid, temperature=1.0):
    if z_s.shape[-1] == 1:
        return valid_mean((z_s[:, 0] - z_t[:, 0]) ** 2, valid)
    log_t, log_s = log_softmax(z_t / temperature), log_softmax(z_s / temperature)
    return temperature ** 2 * valid_mean((np.exp(log_t) * (log_t - log_s)).sum(-1), valid)


def feak(hs, ht, mask):
    """hs, ht: mapped layers 1..M. Squared error over the real tokens of the whole batch and D, / (tokens * D)."""
    m = mask[..., None]
    return np.mean([(((s - t) * m) ** 2).sum() / (max(mask.sum(), 1) * s.shape[-1]) for s, t in zip(hs, ht)])


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def feak_cls(hs_cls, ht_cls, valid):
    return np.mean([valid_mean(((unit(s) - unit(t)) ** 2).mean(-1), valid) for s, t in zip(hs_cls, ht_cls)])


def relk(hs, ht, mask):
    """hs, ht: states 0..M. Per example the FSP matrix G = A^T B / n (n real tokens), MSE over D x D,
    mean over examples with a real token, mean over the M consecutive pairs."""
    m = mask[..., None]
    n = np.maximum(mask.sum(-1), 1)[:, None, None]
    rows = mask.any(-1)

    def fsp(a, b):
        return (a * m).transpose(0, 2, 1) @ (b * m) / n

    return np.mean([valid_mean(((fsp(hs[i - 1], hs[i]) - fsp(ht[i - 1], ht[i])) ** 2).mean((1, 2)), rows)
                    for i in range(1, len(hs))])


def relk_gram(hs, ht, mask):
    """RelK without D x D matrices: A_S^T B_S - A_T^T B_T = X^T Y with X = [A_S; A_T] and Y = [B_S; -B_T]
    stacked along tokens, and ||X^T Y||^2 = sum((X X^T) * (Y Y^T))."""
    m = mask[..., None]
    n = np.maximum(mask.sum(-1), 1)
    rows = mask.any(-1)
    per_pair = []
    for i in range(1, len(hs)):
        x = np.concatenate([hs[i - 1] * m, ht[i - 1] * m], axis=1)
        y = np.concatenate([hs[i] * m, -ht[i] * m], axis=1)
        sq = ((x @ x.transpose(0, 2, 1)) * (y @ y.transpose(0, 2, 1))).sum((1, 2))
        per_pair.append(valid_mean(sq / (n ** 2 * hs[i].shape[-1] ** 2), rows))
    return np.mean(per_pair)


def attk(scores_s, scores_t, mask):
    both = (mask[:, None, :, None] > 0) & (mask[:, None, None, :] > 0)
    heads = scores_s[0].shape[1]
    return np.mean([(np.where(both, s - t, 0.0) ** 2).sum() / (max(both.sum(), 1) * heads)
                    for s, t in zip(scores_s, scores_t)])


def applied(action):
    """A chosen action's loss weights: scaled to sum to 4."""
    action = np.asarray(action, dtype=np.float64)
    return action * N_KNOWLEDGE / max(action.sum(), 1e-6)


# ---- one training step ------------------------------------------------------------------------

def step_loss(d, student, weighted_sum=None):
    """The traced step's total loss with the student weights `student` (HF names plus projections.*):
    a function of the weights alone, for finite differences. `weighted_sum`: the trace entry with the
    step's action and AttK weight (default: the first step's)."""
    tr, x = d["trace"], d["tensors"]
    ids, types, mask = x["input.input_ids"], x["input.token_type_ids"], x["input.attention_mask"]
    valid = x["input.valid"].astype(bool)
    g = layer_map(d["teacher_config"]["num_hidden_layers"], d["student_config"]["num_hidden_layers"])
    h_t, s_t, _, _, z_t = bert(d["teacher"], d["teacher_config"], ids, types, mask)
    h_s, s_s, _, _, z_s = bert(student, d["student_config"], ids, types, mask)
    proj = {k[len("projections."):]: v for k, v in student.items() if k.startswith("projections.")}
    hs, ht = project(h_s, proj), [h_t[l] for l in g]
    real = mask * valid[:, None]
    raw = [fink(z_s, x["input.labels"], valid), resk(z_s, z_t, valid, tr["temperature"]),
           feak(hs[1:], ht[1:], real), relk(hs, ht, real)]
    ws = weighted_sum or tr["weighted_sum"]
    return float(applied(ws["action"]) @ raw) + ws["attk_weight"] * attk(s_s, [s_t[l - 1] for l in g[1:]], real)


def phase_starts(total, phases):
    """Phase k starts at step k T // P; the last entry is T."""
    return [k * total // phases for k in range(phases + 1)]


def ema_divisors(raws, decay=0.99):
    """--loss-norm ema: each step's weights are divided by a running mean of the losses of the steps
    before it (1 at the first step), at least 1e-12."""
    mean, divisors = None, []
    for raw in np.asarray(raws, dtype=np.float64):
        divisors.append(np.ones(N_KNOWLEDGE) if mean is None else np.maximum(mean, 1e-12))
        mean = raw if mean is None else decay * mean + (1 - decay) * raw
    return divisors


def lr_at(step, lr, total, warmup):
    """Linear warm-up from lr / W to lr over W = max(1, floor(warmup * total)) steps, then linear decay
    that reaches lr / (total - W) at the last step."""
    w = max(1, int(warmup * total))
    return lr * ((step + 1) / w if step < w else max(0.0, (total - step) / max(1, total - w)))


def clip(grads, max_norm):
    """(total norm, clipped grads): scaled by max_norm / (norm + 1e-6) when that is below 1."""
    norm = math.sqrt(sum((g ** 2).sum() for g in grads.values()))
    scale = min(1.0, max_norm / (norm + 1e-6))
    return norm, {k: g * scale for k, g in grads.items()}


def adamw(p, grads, lrs, weight_decay, eps=1e-8):
    """AdamW from a zero state, one step per (clipped) gradient in `grads` at the learning rates `lrs`:
    decoupled decay p (1 - lr wd), then the bias-corrected Adam step."""
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        m, v = BETAS[0] * m + (1 - BETAS[0]) * g, BETAS[1] * v + (1 - BETAS[1]) * g ** 2
        p = p * (1 - lr * weight_decay) - lr * (m / (1 - BETAS[0] ** t)) / (np.sqrt(v / (1 - BETAS[1] ** t)) + eps)
    return p


def decays(p):
    """Weight decay on matrices only (weights, embeddings, projections), never on biases or LayerNorm."""
    return p.ndim >= 2


# ---- the agent ------------------------------------------------------------------------------------

def mlp(x, layers):
    """Linear layers with ReLU between them, none after the last. Returns (output, every layer's output)."""
    outs = [x]
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
        outs.append(x)
    return x, outs


def mlp_backward(layers, outs, grad):
    """Gradients [(dW, db)] of an mlp() call, and the gradient of its input."""
    grads = []
    for i in reversed(range(len(layers))):
        if i < len(layers) - 1:
            grad = grad * (outs[i + 1] > 0)
        grads.append((grad.T @ outs[i], grad.sum(0)))
        grad = grad @ layers[i][0]
    return grads[::-1], grad


def layers_of(weights, prefix, indices):
    return [(weights[f"{prefix}.{i}.weight"], weights[f"{prefix}.{i}.bias"]) for i in indices]


class Agent:
    """The KSM's networks under the names of agent.safetensors; `prefix` '' or 'target_'."""

    NETS = {"encoder.student": (0, 2), "encoder.teacher": (0, 2), "actor.0": (0, 2, 4), "critic.net": (0, 2, 4)}

    def __init__(self, weights, config, student_dim):
        self.w = {k: v.copy() for k, v in weights.items()}  # updates must not touch the caller's arrays
        self.config, self.student_dim = config, student_dim
        self.moments = {}  # parameter name -> (step, m, v): Adam's state, kept across updates

    def net(self, name, prefix=""):
        return layers_of(self.w, prefix + name, self.NETS[name])

    def encode(self, raw, prefix=""):
        """Raw state [N, Hs+Ht+1] -> [N_S(s_cls); N_T(t_cls); progress], with the caches for backward."""
        s, t, progress = raw[:, :self.student_dim], raw[:, self.student_dim:-1], raw[:, -1:]
        ys, cs = mlp(s, self.net("encoder.student", prefix))
        yt, ct = mlp(t, self.net("encoder.teacher", prefix))
        return np.concatenate([ys, yt, progress], axis=1), (cs, ct)

    def mu(self, state, prefix=""):
        z, cache = mlp(state, self.net("actor.0", prefix))
        return 1.0 / (1.0 + np.exp(-z)), cache

    def q(self, state, action, prefix=""):
        y, cache = mlp(np.concatenate([state, action], axis=1), self.net("critic.net", prefix))
        return y[:, 0], cache

    def weights(self, proposal):
        """Soft: clipped to [0, 1]. Hard: 1 where strictly above the threshold; all off -> FinK on."""
        if not self.config["hard"]:
            return np.clip(proposal, 0.0, 1.0)
        a = (proposal > self.config["threshold"]).astype(np.float64)
        a[..., 0] = np.where(a.sum(-1) == 0, 1.0, a[..., 0])
        return a

    def act(self, raw):
        return self.weights(self.mu(self.encode(raw[None])[0])[0])[0]

    def td_target(self, reward, raw_next, done):
        """(y = r + gamma (1 - done) Q'(s', w(mu'(s'))), w(mu'(s'))), s' = N'(raw s'), all from the targets."""
        s_next = self.encode(raw_next, "target_")[0]
        a_next = self.target_action(s_next)
        return reward + self.config["gamma"] * (1 - done) * self.q(s_next, a_next, "target_")[0], a_next

    def target_action(self, s_next):
        """The action the target actor would apply: clipped (soft), thresholded with FinK forced (hard)."""
        return self.weights(self.mu(s_next, "target_")[0])

    def update(self, raw, action, reward, raw_next, done):
        """One critic step, one actor step, one soft target update on this minibatch. Returns a dict:
        the TD target and the target action in it, the critic and actor losses, the gradients of the
        encoder and of the actor by name."""
        c = self.config
        y, a_next = self.td_target(reward, raw_next, done)
        state, (cs, ct) = self.encode(raw)
        q, cq = self.q(state, action)
        critic_loss = ((q - y) ** 2).mean()
        critic_grads, d_in = mlp_backward(self.net("critic.net"), cq, (2 * (q - y) / len(q))[:, None])
        hidden = c["hidden"]
        enc_s, _ = mlp_backward(self.net("encoder.student"), cs, d_in[:, :hidden])
        enc_t, _ = mlp_backward(self.net("encoder.teacher"), ct, d_in[:, hidden:2 * hidden])
        grads = {**self.named("encoder.student", enc_s), **self.named("encoder.teacher", enc_t),
                 **self.named("critic.net", critic_grads)}
        self.adam(grads, c["lr_critic"], c["critic_weight_decay"])
        state = self.encode(raw)[0]  # the encoders as the critic step left them; the actor does not train them
        mu, ca = self.mu(state)
        q, cq = self.q(state, mu)
        actor_loss = -q.mean()
        _, d_in = mlp_backward(self.net("critic.net"), cq, np.full((len(q), 1), -1.0 / len(q)))
        d_z = d_in[:, -N_KNOWLEDGE:] * mu * (1 - mu)
        actor_grads = self.named("actor.0", mlp_backward(self.net("actor.0"), ca, d_z)[0])
        self.adam(actor_grads, c["lr_actor"], 0.0)
        self.soft_update()
        encoder = {k: v for k, v in grads.items() if k.startswith("encoder.")}
        return {"td_target": y, "td_action": a_next, "critic_loss": critic_loss, "actor_loss": actor_loss,
                "grad": {**encoder, **actor_grads}}

    def soft_update(self):
        """p' <- p' + tau (p - p') for every network."""
        for k in [k for k in self.w if not k.startswith("target_")]:
            self.w["target_" + k] += self.config["tau"] * (self.w[k] - self.w["target_" + k])

    def named(self, name, grads):
        return {f"{name}.{i}.{part}": g for i, (dw, db) in zip(self.NETS[name], grads)
                for part, g in (("weight", dw), ("bias", db))}

    def adam(self, grads, lr, l2, eps=1e-8):
        """One Adam step with coupled L2 (the decay added to the gradient, biases included)."""
        for k, g in grads.items():
            g = g + l2 * self.w[k]
            t, m, v = self.moments.get(k, (0, 0.0, 0.0))
            t, m, v = t + 1, BETAS[0] * m + (1 - BETAS[0]) * g, BETAS[1] * v + (1 - BETAS[1]) * g ** 2
            self.moments[k] = (t, m, v)
            self.w[k] = self.w[k] - lr * (m / (1 - BETAS[0] ** t)) / (np.sqrt(v / (1 - BETAS[1] ** t)) + eps)


def raw_state(s_last, t_last, valid, progress):
    """[mean over valid rows of the student's [CLS]; the teacher's; progress]."""
    return np.concatenate([s_last[valid, 0].mean(0), t_last[valid, 0].mean(0), [progress]])


def explore_soft(action, history, beta):
    if not history:
        return 0.0
    prev = np.asarray(history[-1])
    cos = action @ prev / max(np.linalg.norm(action) * np.linalg.norm(prev), 1e-8)
    return beta * (1 - cos)


def explore_hard(action, history, beta):
    if not history:
        return 0.0
    return -beta * sum(np.array_equal(action, h) for h in history) / len(history)


def learned_rewards(task, explore, phase):
    """(task - mean task reward of its phase index over the buffer) / RMS of that over the buffer + explore."""
    phase = phase.astype(int)
    baseline = np.array([task[phase == k].mean() for k in phase])
    centred = task - baseline
    return centred / max(math.sqrt((centred ** 2).mean()), 1e-8) + explore
