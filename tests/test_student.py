"""kd_ref/student.py's initialisations: from the teacher's mapped layers, or from another checkpoint of
the teacher's depth (the pre-trained model the teacher was fine-tuned from, BERT-PKD's start)."""
import pytest
import torch

from kd_ref.bert import Bert, BertConfig
from kd_ref.plumbing.checkpoint import save_bert
from kd_ref.plumbing.errors import KdError
from kd_ref.student import build_student, layer_map

CONFIG = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                    max_position_embeddings=16, num_labels=3)


def models():
    torch.manual_seed(0)
    teacher, pretrained = Bert(CONFIG), Bert(CONFIG)  # two different weight sets of one shape
    return teacher, pretrained


def test_init_from_the_teacher_or_a_checkpoint_of_its_depth_takes_the_mapped_layers(tmp_path):
    teacher, pretrained = models()
    save_bert(pretrained, tmp_path / "pretrained")
    g = layer_map(4, 2)  # 0, 2, 4
    for init, source in (("teacher", teacher), (str(tmp_path / "pretrained"), pretrained)):
        student = build_student(teacher, 2, None, init, g)
        assert student.config.num_hidden_layers == 2
        for i in (1, 2):
            for (name, p), q in zip(student.layers[i - 1].named_parameters(), source.layers[g[i] - 1].parameters()):
                assert torch.equal(p, q), (init, i, name)
        assert torch.equal(student.embeddings.word.weight, source.embeddings.word.weight)
        other = teacher if source is pretrained else pretrained
        assert not torch.equal(student.layers[0].qkv.weight, other.layers[g[1] - 1].qkv.weight)


def test_a_checkpoint_of_another_depth_is_refused(tmp_path):
    teacher, _ = models()
    save_bert(Bert(BertConfig(**{**CONFIG.__dict__, "num_hidden_layers": 3})), tmp_path / "three")
    with pytest.raises(KdError, match="has 3 layers; expected --student-layers \\(2\\) or the teacher's \\(4\\)"):
        build_student(teacher, 2, None, str(tmp_path / "three"), layer_map(4, 2))
