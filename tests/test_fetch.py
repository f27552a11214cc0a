"""weights/fetch.py against a local fake Hugging Face Hub (no internet)."""
import http.server
import importlib.util
import threading
from pathlib import Path

import pytest
import safetensors.torch
import torch

from kd_ref.bert import Bert, BertConfig
from kd_ref.plumbing.checkpoint import load_bert, save_bert

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("fetch", ROOT / "weights" / "fetch.py")
fetch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fetch)

REPO = "org/tiny-bert"


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Serves files of `root` at /{REPO}/resolve/main/{file}, with single-range requests.
    `lie` names files whose Content-Length is overstated by 10 bytes (a dropped connection)."""

    root: Path
    lie: set = set()
    ranges: list = []  # (file, Range header) of every request

    def do_GET(self):
        file = self.path.removeprefix(f"/{REPO}/resolve/main/")
        path = self.root / file
        self.ranges.append((file, self.headers.get("Range")))
        if "/" in file or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(self.headers["Range"].removeprefix("bytes=").removesuffix("-")) if self.headers["Range"] else 0
        if start >= len(data):
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start + (10 if file in self.lie else 0)))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake hub serving a tiny checkpoint (no tokenizer.json); yields (repo folder, handler class)."""
    repo = tmp_path / "hub"
    model = Bert(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32, max_position_embeddings=16))
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("\n".join(f"w{i}" for i in range(30)))
    (tmp_path / "tok" / "tokenizer_config.json").write_text("{}")
    save_bert(model, repo, tokenizer_dir=tmp_path / "tok")
    handler = type("Hub", (FakeHub,), {"root": repo, "lie": set(), "ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("KD_HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/")
    yield repo, handler
    server.shutdown()
    server.server_close()


def test_full_download_skips_missing_optional_files(tmp_path, hub, capsys):
    repo, handler = hub
    out = tmp_path / "out"
    fetch.main([REPO, str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer_config.json",
                                                     "vocab.txt"]
    for p in out.iterdir():
        assert p.read_bytes() == (repo / p.name).read_bytes(), p.name
    assert "tokenizer.json: not in the repo, skipped" in capsys.readouterr().out
    model, has_classifier = load_bert(out)
    assert has_classifier and model.config.num_hidden_layers == 2
    handler.ranges.clear()
    fetch.main([REPO, str(out)])  # complete files are not fetched again
    assert [f for f, _ in handler.ranges] == ["tokenizer.json", "special_tokens_map.json"]


def test_resume_from_part_file(tmp_path, hub):
    repo, handler = hub
    out = tmp_path / "out"
    out.mkdir()
    data = (repo / "model.safetensors").read_bytes()
    half = len(data) // 2
    (out / "model.safetensors.part").write_bytes(data[:half])
    fetch.main([REPO, str(out)])
    assert ("model.safetensors", f"bytes={half}-") in handler.ranges
    assert (out / "model.safetensors").read_bytes() == data and not (out / "model.safetensors.part").exists()


def test_size_mismatch_is_an_error(tmp_path, hub):
    repo, handler = hub
    handler.lie.add("model.safetensors")
    out = tmp_path / "out"
    size = (repo / "model.safetensors").stat().st_size
    with pytest.raises(SystemExit, match=f"model.safetensors: got {size} bytes, expected {size + 10}"):
        fetch.main([REPO, str(out)])
    assert not out.exists()  # nothing run.py could mistake for a checkpoint; the bytes kept to resume from
    assert (tmp_path / "out.part" / "model.safetensors.part").exists()
    handler.lie.clear()
    fetch.main([REPO, str(out)])  # the server stops lying: the rerun resumes, gets a 416 and starts over
    assert (out / "model.safetensors").read_bytes() == (repo / "model.safetensors").read_bytes()
    assert not (tmp_path / "out.part").exists()


def test_bin_fallback_and_missing_required_file(tmp_path, hub):
    repo, _ = hub
    model, _ = load_bert(repo)
    torch.save(safetensors.torch.load_file(repo / "model.safetensors"), repo / "pytorch_model.bin")
    (repo / "model.safetensors").unlink()
    out = tmp_path / "out"
    fetch.main([REPO, str(out)])
    assert not (out / "pytorch_model.bin").exists()
    again, _ = load_bert(out)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    (repo / "vocab.txt").unlink()
    with pytest.raises(SystemExit, match="vocab.txt: not found.*README's first real run"):
        fetch.main([REPO, str(tmp_path / "other")])
    assert not (tmp_path / "other").exists() and not (tmp_path / "other.part").exists()  # nothing left behind


def test_unreachable_hub_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused
    with pytest.raises(SystemExit, match="fetch: .*python weights/fetch.py minilm-l6 weights/minilm-l6"):
        fetch.main([REPO, str(tmp_path / "bert")])
    assert list(tmp_path.iterdir()) == []
