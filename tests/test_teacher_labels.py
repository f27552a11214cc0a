"""A teacher's classes mean the task's (issue 30 part 4): the GLUE label orders are those of the
transformers GLUE processors, and a teacher's id2label is matched to them by name."""
import dataclasses
import importlib
import json
import shutil

import pytest
import torch

import run
from kd_ref.bert import Bert, BertConfig
from kd_ref.data.glue import TASKS, get_task
from kd_ref.plumbing.checkpoint import load_bert, save_bert
from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.teacher_labels import match_labels
from tiny_task import write_tiny_task

# get_labels() of transformers' GLUE processors, src/transformers/data/processors/glue.py (huggingface/
# transformers at commit 00e12e7c54598e50e7bef1540db3408f81916de1, the 4.x series): the order every
# GLUE checkpoint fine-tuned with run_glue.py has. transformers 5 removed the module; where the installed
# version still has it, the test reads it from there instead.
PROCESSOR_LABELS = {"cola": ["0", "1"], "mnli": ["contradiction", "entailment", "neutral"], "mrpc": ["0", "1"],
                    "sst-2": ["0", "1"], "sts-b": [None], "qqp": ["0", "1"], "qnli": ["entailment", "not_entailment"],
                    "rte": ["entailment", "not_entailment"], "wnli": ["0", "1"]}


def processor_labels() -> dict:
    try:
        glue = importlib.import_module("transformers.data.processors.glue")
    except ImportError:
        return PROCESSOR_LABELS
    return {name: glue.glue_processors[name]().get_labels() for name in PROCESSOR_LABELS}


def test_every_glue_task_has_the_label_order_of_the_transformers_processors():
    labels = processor_labels()
    assert len(TASKS) == len(labels)
    for name, order in labels.items():
        task = get_task(name)
        assert (list(task.labels) if task.labels else [None]) == order, name
        assert len(task.label_aliases) in (0, len(order)), name


def tiny(num_labels: int, id2label: dict | None) -> Bert:
    torch.manual_seed(0)
    return Bert(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=24, max_position_embeddings=16, num_labels=num_labels, id2label=id2label))


def logits(model) -> torch.Tensor:
    ids = torch.arange(5, 15).reshape(2, 5)
    return model.eval()(ids, torch.ones_like(ids)).logits


@pytest.mark.parametrize("task, names, order", [
    ("qnli", {0: "not_entailment", 1: "entailment"}, [1, 0]),            # the slip the issue names
    ("mnli", {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}, [2, 0, 1]),  # a hub MNLI teacher's order
    ("sst2", {0: "NEGATIVE", 1: "POSITIVE"}, [0, 1]),                    # the datasets names of '0' and '1'
    ("rte", {0: "entailment", 1: "not_entailment"}, [0, 1]),
])
def test_a_teacher_s_classes_are_put_in_the_task_s_order_by_name(task, names, order, capsys):
    teacher = tiny(len(names), names)
    before = logits(teacher)
    match_labels(teacher, get_task(task), "t")
    torch.testing.assert_close(logits(teacher), before[:, order], rtol=0, atol=0)
    assert teacher.config.id2label == dict(enumerate(get_task(task).labels))
    assert ("reordered" in capsys.readouterr().out) == (order != sorted(order))


def test_labels_without_names_are_taken_in_order_with_a_note(capsys):
    for id2label in ({0: "LABEL_0", 1: "LABEL_1"}, None):
        teacher = tiny(2, id2label)
        before = logits(teacher)
        match_labels(teacher, get_task("qnli"), "hub/qnli")
        torch.testing.assert_close(logits(teacher), before, rtol=0, atol=0)
        err = capsys.readouterr().err
        assert err == ("note: hub/qnli/config.json names its classes LABEL_0, LABEL_1 only: taken as qnli's "
                       "entailment, not_entailment, in that order\n")


@pytest.mark.parametrize("names", [{0: "cat", 1: "dog"}, {0: "entailment", 1: "entailment"},
                                   {0: "LABEL_0", 1: "entailment"}])
def test_names_that_do_not_match_the_task_are_refused_in_one_line(names):
    with pytest.raises(KdError) as info:
        match_labels(tiny(2, names), get_task("rte"), "t")
    assert str(info.value).startswith("t/config.json: id2label ") and "\n" not in str(info.value)
    assert "does not name rte's classes entailment, not_entailment" in str(info.value)


def test_a_teacher_with_its_classes_reversed_scores_and_caches_as_the_same_teacher(tmp_path, capsys):
    """run.py's fine-tuned teacher, and a copy whose classifier rows and id2label are reversed (the same
    model as a hub checkpoint would hold it): the same dev score and the same cached logits."""
    write_tiny_task(tmp_path, n_train=120, n_dev=60, n_test=10, num_labels=3)
    flags = ["--task", "rte", "--data-dir", str(tmp_path / "data"), "--max-len", "32", "--teacher-epochs", "1",
             "--teacher-lr", "5e-4", "--teacher-only"]
    run.main(flags + ["--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "a")])
    model, _ = load_bert(tmp_path / "a" / "teacher")
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.config = dataclasses.replace(model.config, id2label={0: "not_entailment", 1: "entailment"})
    save_bert(model, tmp_path / "reversed", tokenizer_dir=tmp_path / "a" / "teacher")
    run.main(flags + ["--teacher", str(tmp_path / "reversed"), "--out", str(tmp_path / "b")])
    assert "reordered to rte's entailment, not_entailment" in capsys.readouterr().out
    dev = [json.loads((tmp_path / d / "teacher.json").read_text())["dev"] for d in ("a", "b")]
    assert dev[0] == dev[1]
    from safetensors.torch import load_file
    cached = [load_file(tmp_path / d / "teacher-cache.safetensors")["logits"] for d in ("a", "b")]
    torch.testing.assert_close(cached[0], cached[1], rtol=0, atol=0)
    shutil.rmtree(tmp_path / "reversed")
