"""The student: which teacher layer each student layer learns from, how the
student is built and initialised, and the projections between their widths.

method.md, "Four kinds of knowledge": student layer i (1..M) learns from teacher
layer g(i) = round(i * N / M), with g(0) = 0 for the embedding output [ours];
halves round up (README's [ours] table): 12 -> 8 gives 2, 3, 5, 6, 8, 9, 11, 12.
"""
import copy
import math

from torch import nn

from kd_ref.bert import Bert, BertConfig
from kd_ref.plumbing.checkpoint import load_bert
from kd_ref.plumbing.errors import KdError


def default_layers(teacher_layers: int) -> int:
    """--student-layers when not given: half the teacher's layers (12 -> 6), at least one."""
    return max(1, teacher_layers // 2)


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """g(0..M): g(i) = round(i * N / M), rounding halves up (Python's round() rounds them to even)."""
    if not 1 <= student_layers <= teacher_layers:
        raise KdError(f"--student-layers {student_layers}: must be between 1 and the teacher's "
                      f"{teacher_layers} layers")
    return [math.floor(i * teacher_layers / student_layers + 0.5) for i in range(student_layers + 1)]


def layer_map_table(g: list[int]) -> str:
    rows = ["student layer | teacher layer", "------------- | -------------"]
    rows += [f"{'emb' if i == 0 else i:>13} | {'emb' if t == 0 else t}" for i, t in enumerate(g)]
    return "\n".join(rows)


def student_config(teacher: BertConfig, layers: int, hidden: int | None, init: str = "random") -> BertConfig:
    """Teacher's config with M layers; a different width keeps the head size of 64 and FFN of 4x.
    Refuses a student that cannot be built (run.py asks before any work starts)."""
    layer_map(teacher.num_hidden_layers, layers)  # 1 <= M <= N
    cfg = copy.deepcopy(teacher)
    cfg.num_hidden_layers = layers
    if hidden is not None and hidden != teacher.hidden_size:
        if hidden % 64:
            raise KdError(f"--student-hidden {hidden}: must be a multiple of 64 (the head size)")
        if hidden > teacher.hidden_size:
            raise KdError(f"--student-hidden {hidden}: wider than the teacher's {teacher.hidden_size}")
        cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size = hidden, hidden // 64, 4 * hidden
    if init == "teacher" and cfg.hidden_size != teacher.hidden_size:
        raise KdError("--student-init teacher needs --student-hidden equal to the teacher's width; "
                      "use --student-init random or a checkpoint folder")
    return cfg


def build_student(teacher: Bert, layers: int, hidden: int | None, init: str, g: list[int]) -> Bert:
    """init: 'teacher' copies embeddings, pooler, classifier and teacher layers g(1..M);
    'random' starts from scratch; anything else is a checkpoint folder: one of M layers is loaded
    as it is, one of the teacher's N layers gives its embeddings, pooler and layers g(1..M), as
    'teacher' does (BERT-PKD's start from the pre-trained model: pass the checkpoint the teacher was
    fine-tuned from), with its classifier or a fresh one."""
    if init == "random":
        return Bert(student_config(teacher.config, layers, hidden, init))
    source = teacher
    if init != "teacher":
        source, _ = load_bert(init, num_labels=teacher.config.num_labels)
        if source.config.num_hidden_layers == layers:
            return source
        if source.config.num_hidden_layers != teacher.config.num_hidden_layers:
            raise KdError(f"--student-init {init}: has {source.config.num_hidden_layers} layers; expected "
                          f"--student-layers ({layers}) or the teacher's ({teacher.config.num_hidden_layers})")
    student = Bert(student_config(source.config, layers, hidden, "teacher"))
    source_state = source.state_dict()
    state = {k: v for k, v in source_state.items() if not k.startswith("layers.")}
    for i in range(1, layers + 1):
        prefix = f"layers.{g[i] - 1}."
        state.update({f"layers.{i - 1}." + k[len(prefix):]: v
                      for k, v in source_state.items() if k.startswith(prefix)})
    student.load_state_dict(state)
    return student


def make_projections(student_width: int, teacher_width: int, count: int) -> nn.ModuleList:
    """W_i for student states 0..M (student width -> teacher width); identity when widths match."""
    if student_width == teacher_width:
        return nn.ModuleList(nn.Identity() for _ in range(count))
    return nn.ModuleList(nn.Linear(student_width, teacher_width) for _ in range(count))
