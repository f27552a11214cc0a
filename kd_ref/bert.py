"""BERT for sequence classification, written out in one file.

The same computation as Hugging Face `BertForSequenceClassification` (absolute
positions, post-LayerNorm layers, exact-erf GELU, tanh pooler on [CLS]), so HF
checkpoints load into it (kd_ref/plumbing/checkpoint.py maps the names). The forward pass
also hands out what distillation needs (method.md, "Four kinds of knowledge"):
every hidden state h^(0..N), and for asked layers the attention probabilities
and the pre-softmax scores (AttK).

Shapes: B batch, L sequence length, H hidden size, heads attention heads,
d = H / heads. attention_mask is [B, L] with 1 for real tokens, 0 for padding.
"""
from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from kd_ref.plumbing.errors import KdError


@dataclass
class BertConfig:
    """Architecture hyper-parameters, named as in HF config.json."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    initializer_range: float = 0.02
    pad_token_id: int = 0
    num_labels: int = 2  # 1 means regression (STS-B)
    id2label: dict[int, str] | None = None

    @classmethod
    def from_hf_dict(cls, d: dict) -> BertConfig:
        """Read HF config.json content; unknown keys are ignored, unsupported variants rejected."""
        if d.get("hidden_act", "gelu") != "gelu":
            raise KdError(f"hidden_act={d['hidden_act']!r} is not supported (only 'gelu')")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise KdError(f"position_embedding_type={d['position_embedding_type']!r} is not supported (only 'absolute')")
        known = {f.name for f in fields(cls)} - {"num_labels", "id2label"}
        kwargs = {k: v for k, v in d.items() if k in known}
        # HF stores the label count only through id2label (JSON keys are strings)
        if d.get("id2label"):
            kwargs["id2label"] = {int(i): label for i, label in d["id2label"].items()}
            kwargs["num_labels"] = len(kwargs["id2label"])
        elif "num_labels" in d:
            kwargs["num_labels"] = d["num_labels"]
        return cls(**kwargs)

    def to_hf_dict(self) -> dict:
        """HF config.json content for BertForSequenceClassification."""
        d = asdict(self)
        del d["num_labels"], d["id2label"]
        id2label = self.id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}
        if len(id2label) != self.num_labels:
            raise KdError(f"id2label has {len(id2label)} labels but num_labels={self.num_labels}")
        d.update(
            model_type="bert",
            architectures=["BertForSequenceClassification"],
            hidden_act="gelu",
            position_embedding_type="absolute",
            id2label={str(i): label for i, label in id2label.items()},
            label2id={label: i for i, label in id2label.items()},
            problem_type="regression" if self.num_labels == 1 else "single_label_classification",
        )
        return d


class BertOutput(NamedTuple):
    logits: Tensor  # [B, num_labels]
    hidden_states: list[Tensor] | None  # N+1 entries of [B, L, H]: [0] embeddings, [l] layer l
    attentions: dict[int, Tensor]  # layer l (1-based) -> softmax probabilities [B, heads, L, L]
    scores: dict[int, Tensor]  # layer l -> Q K^T / sqrt(d), padding mask NOT added, [B, heads, L, L]


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """F.dropout(x, p, training), with a cheaper random mask on the CPU.

    torch's CPU dropout draws one Mersenne-Twister number per element (bernoulli_, one
    thread): 9 ms for one [8, 12, 128, 128] attention map on a 2-core Xeon, 9% of the CPU
    training step in a profile (speed/BENCHMARKS.md, Run 4). Here each 64-bit draw gives four
    16-bit uniforms (1.2 ms for that map). An element is dropped with probability
    q = round(p * 2^16) / 2^16 (0.100006 for p = 0.1) and the kept ones are scaled by
    1 / (1 - q), so the expectation is x, as in F.dropout. CUDA keeps F.dropout (its Philox
    generator is fast), and so does compiled code, where inductor generates the mask itself.
    Seeded by torch.manual_seed.
    """
    if not training or p in (0.0, 1.0) or x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p, training)
    words = torch.empty(-(-x.numel() // 4), dtype=torch.int64).random_(-2 ** 63, None)  # full 64-bit range
    uniform16 = words.view(torch.int16)[: x.numel()].view(x.shape)  # uniform on -32768..32767
    dropped = round(p * 2 ** 16)
    return x * (uniform16 >= dropped - 2 ** 15).to(x.dtype).mul_(2 ** 16 / (2 ** 16 - dropped))


class Embeddings(nn.Module):
    """word + absolute position + token type embeddings, then LayerNorm and dropout."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.word = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.p_drop = c.hidden_dropout_prob

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word(input_ids) + self.token_type(token_type_ids) + self.position(positions)
        return dropout(self.norm(x), self.p_drop, self.training)


class Layer(nn.Module):
    """One post-LN transformer layer: x = LN(x + attention(x)); x = LN(x + FFN(x))."""

    def __init__(self, c: BertConfig):
        super().__init__()
        if c.hidden_size % c.num_attention_heads:
            raise KdError(f"hidden_size={c.hidden_size} is not a multiple of num_attention_heads={c.num_attention_heads}")
        self.heads = c.num_attention_heads
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size)  # q, k, v stacked along the output dim
        self.attn_out = nn.Linear(c.hidden_size, c.hidden_size)
        self.attn_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.ffn_in = nn.Linear(c.hidden_size, c.intermediate_size)
        self.ffn_out = nn.Linear(c.intermediate_size, c.hidden_size)
        self.ffn_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.p_drop = c.hidden_dropout_prob
        self.p_drop_attn = c.attention_probs_dropout_prob

    def forward(self, x: Tensor, keep: Tensor, maps: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """x [B, L, H]; keep [B, 1, 1, L] bool (True = real key). Returns (x, probs, scores);
        probs/scores are None unless `maps` (SDPA never materialises them)."""
        B, L, H = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)  # each [B, heads, L, d]
        drop_attn = self.p_drop_attn if self.training else 0.0
        # The CPU's SDPA kernel cannot drop attention weights: with dropout it falls back to
        # this same computation, but with torch's slower mask (see `dropout`).
        if maps or (drop_attn > 0 and x.device.type == "cpu"):
            scores = q @ k.transpose(-1, -2) / math.sqrt(H // self.heads)
            # finfo.min rather than -inf: a fully padded row then gives uniform weights, not NaN
            probs = scores.masked_fill(~keep, torch.finfo(scores.dtype).min).softmax(dim=-1)
            context = dropout(probs, drop_attn, self.training) @ v
        else:
            probs = scores = None
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=drop_attn)
        context = context.transpose(1, 2).reshape(B, L, H)
        x = self.attn_norm(x + dropout(self.attn_out(context), self.p_drop, self.training))
        x = self.ffn_norm(x + dropout(self.ffn_out(F.gelu(self.ffn_in(x))), self.p_drop, self.training))
        return (x, probs, scores) if maps else (x, None, None)


class Bert(nn.Module):
    """embeddings -> N layers -> pooler tanh(W h_[CLS] + b) -> dropout -> classifier Linear(H, num_labels)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.p_drop = config.hidden_dropout_prob
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module) -> None:
        """HF's init: normal(0, initializer_range) weights, zero biases, LayerNorm (1, 0)."""
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.config.initializer_range)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            nn.init.zeros_(m.weight[m.padding_idx])
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        *,
        output_hidden_states: bool = False,
        attention_layers: Collection[int] = (),
    ) -> BertOutput:
        """input_ids, attention_mask (1 real / 0 pad, long or bool), token_type_ids: [B, L].
        attention_layers: 1-based layers whose attention probabilities and scores to return;
        the other layers run the fused SDPA kernel."""
        n = self.config.num_hidden_layers
        if any(not 1 <= l <= n for l in attention_layers):
            raise KdError(f"attention_layers={sorted(attention_layers)} out of range 1..{n}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        keep = attention_mask.bool()[:, None, None, :]
        x = self.embeddings(input_ids, token_type_ids)
        hidden_states = [x] if output_hidden_states else None
        attentions, scores = {}, {}
        for l, layer in enumerate(self.layers, start=1):
            x, probs, layer_scores = layer(x, keep, l in attention_layers)
            if probs is not None:
                attentions[l], scores[l] = probs, layer_scores
            if hidden_states is not None:
                hidden_states.append(x)
        return BertOutput(self.head(x[:, 0]), hidden_states, attentions, scores)

    def head(self, cls: Tensor) -> Tensor:
        """[B, H] last-layer [CLS] states -> [B, num_labels] fp32 logits: classifier(dropout(tanh(pooler(cls)))).

        Never in bf16: the losses compare student and teacher logits that differ by little near
        convergence, and logits rounded to bf16 (8 bits) lose that difference (ResK of a student
        0.05 from its teacher: ~1% off, 0.01 from it: ~15%). Under autocast the head runs in fp64,
        not fp32, because on CUDA fp32 matmuls run as TF32 (run.py), whose 10-bit inputs still
        cost ~0.2% at 0.05 (fp32: ~0.01%). It is one [B, H] x [H, H] product: nothing next to the
        encoder. Outside autocast it runs in the model's dtype, as nn.Linear would.
        """
        dtype = torch.float64 if torch.is_autocast_enabled(cls.device.type) else cls.dtype
        with torch.autocast(cls.device.type, enabled=False):
            pooled = torch.tanh(F.linear(cls.to(dtype), self.pooler.weight.to(dtype), self.pooler.bias.to(dtype)))
            pooled = dropout(pooled, self.p_drop, self.training)
            return F.linear(pooled, self.classifier.weight.to(dtype), self.classifier.bias.to(dtype)).float()
