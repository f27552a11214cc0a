import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kd_ref.data.glue import TASKS, Example, get_task, read_split, resolve_data_dir, write_predictions
from kd_ref.plumbing.errors import KdError

# rows per file of the GLUE release (data rows, header excluded)
ROW_COUNTS = {
    ("cola", "train"): 8551, ("cola", "dev"): 1043, ("cola", "test"): 1063,
    ("sst2", "train"): 67349, ("sst2", "dev"): 872, ("sst2", "test"): 1821,
    ("mrpc", "train"): 3668, ("mrpc", "dev"): 408, ("mrpc", "test"): 1725,
    ("stsb", "train"): 5749, ("stsb", "dev"): 1500, ("stsb", "test"): 1379,
    ("rte", "train"): 2490, ("rte", "dev"): 277, ("rte", "test"): 3000,
    ("wnli", "train"): 635, ("wnli", "dev"): 71, ("wnli", "test"): 146,
    ("qnli", "dev"): 5463, ("qnli", "test"): 5463,
}


@pytest.mark.parametrize("name,split", list(ROW_COUNTS))
def test_real_files(glue_dir, name, split):
    task = get_task(name)
    examples = read_split(glue_dir, task, split)
    assert len(examples) == ROW_COUNTS[name, split]
    assert len({e.guid for e in examples}) == len(examples)
    assert all(e.text_a for e in examples)
    assert all((e.text_b is None) == (task.text_b is None) for e in examples)
    labels = [e.label for e in examples]
    if split == "test":
        assert all(label is None for label in labels)
    elif task.labels is None:
        assert all(isinstance(x, float) and 0.0 <= x <= 5.0 for x in labels)
        assert len(set(labels)) > 50
    else:
        assert all(isinstance(x, int) for x in labels)
        assert set(labels) == set(range(task.num_labels))  # every class occurs, none out of range


def test_real_files_known_rows(glue_dir):
    # first rows as in the files: CoLA has no header, MRPC has a BOM, STS-B labels are scores
    cola = read_split(glue_dir, get_task("cola"), "dev")[0]
    assert (cola.text_a, cola.label) == ("The sailors rode the breeze clear of the rocks.", 1)
    mrpc = read_split(glue_dir, get_task("mrpc"), "dev")[0]
    assert mrpc.label == 1 and mrpc.text_b.startswith('"The foodservice pie business')
    stsb = read_split(glue_dir, get_task("stsb"), "train")[1]
    assert (stsb.text_a, stsb.text_b) == ("A man is playing a large flute.", "A man is playing a flute.")
    assert stsb.label == 3.8
    rte = read_split(glue_dir, get_task("rte"), "dev")[0]
    assert rte.label == get_task("rte").labels.index("not_entailment") == 1


def test_task_table():
    folders = ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI"]
    assert [t.folder for t in TASKS.values()] == folders
    assert get_task("SST-2") is get_task("sst2") is get_task("Sst2")
    assert get_task("sts-b").num_labels == 1 and get_task("sts-b").is_regression
    assert get_task("mnli").labels == ("contradiction", "entailment", "neutral")
    assert get_task("mnli").dev_splits == ("dev_matched", "dev_mismatched")
    assert get_task("qnli").num_labels == 2
    for task in TASKS.values():
        assert task.main_metric in task.metrics
    with pytest.raises(KdError, match="known tasks: cola, sst2, mrpc"):
        get_task("squad")


def test_resolve_data_dir(tmp_path, monkeypatch, glue_dir):
    monkeypatch.setenv("KD_GLUE_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir(str(glue_dir)) == glue_dir
    monkeypatch.delenv("KD_GLUE_DIR")
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"  # <repo>/../shared/...
    if default.is_dir():
        assert resolve_data_dir(None) == default
    else:
        with pytest.raises(KdError, match=f"{default} \\(default\\) does not exist"):
            resolve_data_dir(None)
    with pytest.raises(KdError, match=r"nowhere.*python -m kd_ref\.data\.download"):
        resolve_data_dir(str(tmp_path / "nowhere"))


def write(root, folder, split, content: bytes | str):
    path = root / folder / f"{split}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"


def test_quotes_are_data(tmp_path):
    write(tmp_path, "RTE", "dev", RTE_HEADER + '0\tHe said "hi.\tShe said "no\tentailment\n'
                                               '1\t"quoted\ttext"\tnot_entailment\n')
    a, b = read_split(tmp_path, get_task("rte"), "dev")
    assert (a.text_a, a.text_b, a.label) == ('He said "hi.', 'She said "no', 0)
    assert (b.text_a, b.text_b, b.label) == ('"quoted', 'text"', 1)


def test_crlf_bom_and_no_final_newline(tmp_path):
    lf = RTE_HEADER + "0\ta b\tc\tentailment\n1\td\te\tnot_entailment\n"
    write(tmp_path, "RTE", "dev", lf)
    expected = read_split(tmp_path, get_task("rte"), "dev")
    for variant in [lf.replace("\n", "\r\n"), "\ufeff" + lf, lf.rstrip("\n")]:
        write(tmp_path, "RTE", "dev", variant)
        assert read_split(tmp_path, get_task("rte"), "dev") == expected
    assert expected[1] == Example("dev-1", "d", "e", 1)


def test_headerless_cola_and_headed_test(tmp_path):
    write(tmp_path, "CoLA", "train", "gj04\t1\t\tGood.\r\ngj04\t0\t*\tBad good.\r\n")
    write(tmp_path, "CoLA", "test", "index\tsentence\n0\tWhat?\n")
    task = get_task("cola")
    assert [(e.text_a, e.label) for e in read_split(tmp_path, task, "train")] == [("Good.", 1), ("Bad good.", 0)]
    assert read_split(tmp_path, task, "test") == [Example("test-0", "What?", None, None)]


BAD_FILES = [
    # (task folder, content, message pattern)
    ("RTE", RTE_HEADER + "0\ta\tb\tentailment\n1\ta\tb\n", r"dev\.tsv:3: expected 4 tab-separated columns, got 3"),
    ("RTE", RTE_HEADER + "0\ta\tb\tentailment\n1\ta\tb\tcontradiction\n",
     r"dev\.tsv:3: unknown rte label 'contradiction'"),
    ("RTE", "", r"dev\.tsv: file is empty"),
    ("RTE", "\r\n", r"dev\.tsv: file is empty"),
    ("RTE", b"\xef\xbb\xbf", r"dev\.tsv: file is empty"),  # a BOM alone
    ("RTE", RTE_HEADER, r"dev\.tsv: header only"),
    ("RTE", "0\ta\tb\tentailment\n", r"dev\.tsv:1: header lacks column 'sentence1'"),
    ("RTE", "index\tsentence1\tsentence2\n0\ta\tb\n", r"dev\.tsv:1: header lacks column 'label'"),
    ("RTE", (RTE_HEADER + "0\ta\tb\tentailment\n1\tcaf").encode() + b"\xe9\tb\tentailment\n", r"dev\.tsv:3: not UTF-8"),
    ("RTE", b"PK\x03\x04\x00\x00\x08\x00binary\n", r"dev\.tsv:1: NUL byte"),
    ("CoLA", "gj04\t1\t\tok\ngj04\t2\t\tbad label\n", r"dev\.tsv:2: unknown cola label '2'"),
    ("CoLA", "gj04\t1\tok\n", r"dev\.tsv:1: expected 4 tab-separated columns, got 3"),
    ("STS-B", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
              "0\tg\tf\ty\t0\tnone\tnone\ta\tb\tfive\n", r"dev\.tsv:2: stsb score 'five' is not a number in \[0, 5\]"),
    ("STS-B", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
              "0\tg\tf\ty\t0\tnone\tnone\ta\tb\tnan\n", r"dev\.tsv:2: stsb score 'nan'"),
]


@pytest.mark.parametrize("folder,content,message", BAD_FILES)
def test_bad_files(tmp_path, folder, content, message):
    path = write(tmp_path, folder, "dev", content)
    task = next(t for t in TASKS.values() if t.folder == folder)
    with pytest.raises(KdError, match=message) as info:
        read_split(tmp_path, task, "dev")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_split(tmp_path):
    with pytest.raises(KdError, match=re.escape(str(tmp_path / "RTE" / "train.tsv")) + ": file not found"):
        read_split(tmp_path, get_task("rte"), "train")
    with pytest.raises(KdError, match="mnli has no split 'dev'; splits: train, dev_matched, dev_mismatched"):
        read_split(tmp_path, get_task("mnli"), "dev")


def test_mnli_columns_by_header_name(tmp_path):
    header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
              "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n")
    row = "0\t1\t1n\tfiction\t( a )\t( b )\t(a)\t(b)\tA.\tB.\tneutral\tneutral\n"
    write(tmp_path, "MNLI", "dev_mismatched", header + row)
    assert read_split(tmp_path, get_task("mnli"), "dev_mismatched") == [Example("dev_mismatched-0", "A.", "B.", 2)]


# any text without the separators the format reserves
field_text = st.text(st.characters(exclude_characters="\t\n\r\0", exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(field_text, field_text, st.sampled_from(["entailment", "not_entailment"])), max_size=8),
       crlf=st.booleans())
def test_well_formed_rows_round_trip(tmp_path, rows, crlf):
    newline = "\r\n" if crlf else "\n"
    body = "".join(f"{i}\t{a}\t{b}\t{y}{newline}" for i, (a, b, y) in enumerate(rows))
    text = RTE_HEADER.replace("\n", newline) + body
    write(tmp_path, "RTE", "dev", text)
    if not rows:
        with pytest.raises(KdError, match="header only"):
            read_split(tmp_path, get_task("rte"), "dev")
        return
    examples = read_split(tmp_path, get_task("rte"), "dev")
    assert [(e.text_a, e.text_b, get_task("rte").labels[e.label]) for e in examples] == rows


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from([b"", RTE_HEADER.encode(), RTE_HEADER.encode() + b"0\ta\tb\t"]),
       garbage=st.binary(max_size=200), folder=st.sampled_from(["RTE", "CoLA", "STS-B", "MRPC"]))
def test_random_bytes_parse_or_kderror(tmp_path, prefix, garbage, folder):
    write(tmp_path, folder, "dev", prefix + garbage)
    task = next(t for t in TASKS.values() if t.folder == folder)
    try:
        examples = read_split(tmp_path, task, "dev")
    except KdError as e:
        assert "dev.tsv" in str(e) and "\n" not in str(e)
    else:
        assert all(isinstance(e, Example) for e in examples)


def test_write_predictions_round_trip(tmp_path):
    rte, stsb = get_task("rte"), get_task("stsb")
    out = tmp_path / "sub" / "RTE.tsv"
    out.parent.mkdir()
    out.write_text("old contents")
    write_predictions(out, rte, [1, 0, 0, 1])
    assert out.read_text() == "index\tprediction\n0\tnot_entailment\n1\tentailment\n2\tentailment\n3\tnot_entailment\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["RTE.tsv"]  # no temp file left

    # the file reads back as a GLUE test file with a label column: same classes
    write(tmp_path, "RTE", "dev", "index\tsentence1\tsentence2\tlabel\n" + "".join(
        f"{line.split(chr(9))[0]}\ta\tb\t{line.split(chr(9))[1]}\n" for line in out.read_text().splitlines()[1:]))
    assert [e.label for e in read_split(tmp_path, rte, "dev")] == [1, 0, 0, 1]

    write_predictions(tmp_path / "STS-B.tsv", stsb, [4.12345, 0.0, 5])
    assert (tmp_path / "STS-B.tsv").read_text() == "index\tprediction\n0\t4.123\n1\t0.000\n2\t5.000\n"
    with pytest.raises(KdError, match="prediction 1 is class 2, rte has 2 classes"):
        write_predictions(tmp_path / "bad.tsv", rte, [0, 2])
    assert not (tmp_path / "bad.tsv").exists()
