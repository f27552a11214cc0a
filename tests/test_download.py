"""kd_ref.data.download against a local HTTP server (127.0.0.1, ephemeral port): never the internet."""
import functools
import http.server
import threading
import zipfile

import pytest

from kd_ref.data import download
from kd_ref.data.glue import get_task, read_split
from kd_ref.plumbing.errors import KdError


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder served over HTTP; KD_GLUE_URL points at it."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("KD_GLUE_URL", f"http://127.0.0.1:{server.server_address[1]}/")
    for var in ("http_proxy", "HTTP_PROXY"):  # the request must go straight to the local server
        monkeypatch.delenv(var, raising=False)
    yield root
    server.shutdown()
    thread.join()


def rte_zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA cat sat.\tA cat.\tentailment\n")
        z.writestr("RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA dog.\tNo dog.\tnot_entailment\n")
        z.writestr("RTE/test.tsv", "index\tsentence1\tsentence2\n0\tA.\tB.\n")


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_zip_lands_in_task_folder(served, tmp_path):
    rte_zip(served / "RTE.zip")
    out = tmp_path / "glue"
    assert download.main([str(out), "--tasks", "rte"]) == 0
    assert listing(out) == ["RTE", "RTE/dev.tsv", "RTE/test.tsv", "RTE/train.tsv"]  # no temp files left
    assert read_split(out, get_task("rte"), "dev")[0].label == 1
    assert len(read_split(out, get_task("rte"), "test")) == 1
    # a second run keeps the existing folder, even if the server now has garbage
    (served / "RTE.zip").write_bytes(b"garbage")
    assert download.main([str(out), "--tasks", "RTE"]) == 0
    assert read_split(out, get_task("rte"), "train")[0].text_a == "A cat sat."


@pytest.mark.parametrize("content", [b"this is not a zip file", None])  # broken archive, HTTP 404
def test_failure_leaves_dir_untouched(served, tmp_path, content, capsys):
    if content is not None:
        (served / "RTE.zip").write_bytes(content)
    out = tmp_path / "glue"
    (out / "CoLA").mkdir(parents=True)
    (out / "CoLA" / "dev.tsv").write_text("kept\n")
    before = listing(out)
    with pytest.raises(KdError, match="RTE.zip"):
        download.download_task(out, "RTE")
    assert listing(out) == before
    assert download.main([str(out), "--tasks", "rte"]) == 1
    assert "RTE.zip" in capsys.readouterr().err
    assert listing(out) == before


def test_unknown_task(tmp_path, capsys):
    assert download.main([str(tmp_path), "--tasks", "squad"]) == 1
    assert "unknown GLUE task 'squad'" in capsys.readouterr().err


def test_mrpc_built_from_msr_files(served, tmp_path, glue_dir):
    """MSR source files made from the real GLUE MRPC give back the same GLUE files, byte for byte."""
    real = glue_dir / "MRPC"
    train = (real / "train.tsv").read_text(encoding="utf-8").splitlines()
    dev = (real / "dev.tsv").read_text(encoding="utf-8").splitlines()
    test = (real / "test.tsv").read_text(encoding="utf-8").splitlines()
    # msr_paraphrase_train.txt interleaves the dev pairs with the train pairs; Windows line ends
    header, train, dev = train[0], train[1:], dev[1:]
    assert header.startswith("\ufeffQuality\t") and len(train) > len(dev)
    merged = [header] + [row for pair in zip(train, dev) for row in pair] + train[len(dev):]
    (served / "msr_paraphrase_train.txt").write_bytes("\r\n".join(merged).encode() + b"\r\n")
    msr_test = [header] + ["1\t" + row.split("\t", 1)[1] for row in test[1:]]
    (served / "msr_paraphrase_test.txt").write_bytes("\r\n".join(msr_test).encode() + b"\r\n")
    (served / "mrpc_dev_ids.tsv").write_bytes((real / "dev_ids.tsv").read_bytes())

    out = tmp_path / "glue"
    assert download.main([str(out), "--tasks", "mrpc"]) == 0
    for name in ("train.tsv", "dev.tsv", "test.tsv", "dev_ids.tsv"):
        assert (out / "MRPC" / name).read_bytes() == (real / name).read_bytes(), name
    assert listing(out) == ["MRPC", "MRPC/dev.tsv", "MRPC/dev_ids.tsv", "MRPC/test.tsv", "MRPC/train.tsv"]


@pytest.mark.parametrize("train,message", [
    (b"Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t2\t3\tonly four\n",
     r"msr_paraphrase_train.txt:2: expected 5 tab-separated columns, got 4"),
    (b"Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t2\t3\tcaf\xe9\tb\n", r"msr_paraphrase_train.txt: not UTF-8"),
])
def test_mrpc_bad_source_is_kderror(served, tmp_path, train, message):
    (served / "msr_paraphrase_train.txt").write_bytes(train)
    (served / "msr_paraphrase_test.txt").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
    (served / "mrpc_dev_ids.tsv").write_text("")
    out = tmp_path / "glue"
    out.mkdir()
    with pytest.raises(KdError, match=message):
        download.download_task(out, "MRPC")
    assert listing(out) == []
