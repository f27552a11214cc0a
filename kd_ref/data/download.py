"""Download GLUE into DIR/<Task.folder>/ (the layout kd_ref.data.glue reads).

    python -m kd_ref.data.download DIR [--tasks rte,mrpc]

Sources are those of the well-known download_glue_data.py: one zip per task from
dl.fbaipublicfiles.com. MRPC is not hosted by GLUE (licence): as GLUE does, we
build MRPC/{train,dev,test}.tsv from SentEval's copy of the Microsoft files
msr_paraphrase_{train,test}.txt and GLUE's list of dev pairs mrpc_dev_ids.tsv.
With $KD_GLUE_URL set, every file is fetched from $KD_GLUE_URL/<file name>
instead (a mirror holding all files side by side).

Each task folder appears atomically: files are fetched and unpacked into a
temporary folder inside DIR that is renamed to DIR/<folder> only when complete,
so a failed download leaves DIR as it was. Existing task folders are kept.
"""
import argparse
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from kd_ref.data.glue import TASKS, get_task
from kd_ref.plumbing.errors import KdError

GLUE_URL = "https://dl.fbaipublicfiles.com/glue/data"
SENTEVAL_URL = "https://dl.fbaipublicfiles.com/senteval/senteval_data"
ARCHIVES = {  # task folder -> zip on GLUE_URL (QQP and QNLI have revised archives)
    "CoLA": "CoLA.zip", "SST-2": "SST-2.zip", "STS-B": "STS-B.zip", "QQP": "QQP-clean.zip",
    "MNLI": "MNLI.zip", "QNLI": "QNLIv2.zip", "RTE": "RTE.zip", "WNLI": "WNLI.zip",
}
MRPC_FILES = {"msr_paraphrase_train.txt": SENTEVAL_URL, "msr_paraphrase_test.txt": SENTEVAL_URL,
              "mrpc_dev_ids.tsv": GLUE_URL}


def download_task(data_dir: Path, folder: str) -> None:
    """Fetch one task into data_dir/folder unless that folder exists already."""
    target = data_dir / folder
    if target.exists():
        print(f"{target} exists, skipped")
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=data_dir))
    try:
        if folder == "MRPC":
            for name, url in MRPC_FILES.items():
                _fetch(_url(url, name), tmp / name)
            built = tmp / "MRPC"
            build_mrpc(tmp, built)
        else:
            url = _url(GLUE_URL, ARCHIVES[folder])
            _fetch(url, tmp / "archive.zip")
            built = _unzip(tmp / "archive.zip", tmp / "unpacked", url)
        os.replace(built, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{target} ready")


def _url(default_base: str, name: str) -> str:
    return f"{os.environ.get('KD_GLUE_URL', default_base).rstrip('/')}/{name}"


def _fetch(url: str, path: Path) -> None:
    print(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as e:  # URLError, HTTPError, timeouts are all OSErrors
        raise KdError(f"download of {url} failed: {e}") from None


def _unzip(archive: Path, out: Path, url: str) -> Path:
    """Extract; return the task folder: the archive's single top folder (RTE.zip holds RTE/...)."""
    try:
        with zipfile.ZipFile(archive) as z:
            z.extractall(out)
    except (zipfile.BadZipFile, EOFError) as e:
        raise KdError(f"{url} is not a valid zip archive: {e}") from None
    top = [p for p in out.iterdir() if p.name != "__MACOSX"]
    return top[0] if len(top) == 1 and top[0].is_dir() else out


def build_mrpc(source: Path, out: Path) -> None:
    """GLUE's MRPC files from the Microsoft ones, byte for byte as download_glue_data.py makes them.

    source holds msr_paraphrase_{train,test}.txt and mrpc_dev_ids.tsv. train/dev:
    the train file's rows split by the (id1, id2) pairs in mrpc_dev_ids.tsv, under
    its header (BOM included). test: the test file's rows with the label column
    replaced by a running index.
    """
    dev_ids = {tuple(line.strip().split("\t")) for line in _read_lines(source / "mrpc_dev_ids.tsv")}
    header, *rows = _read_lines(source / "msr_paraphrase_train.txt")
    train, dev = [header], [header]
    for line_no, row in enumerate(rows, 2):
        _, id1, id2, _, _ = _msr_fields(row, source / "msr_paraphrase_train.txt", line_no)
        (dev if (id1, id2) in dev_ids else train).append(row.strip())
    _, *rows = _read_lines(source / "msr_paraphrase_test.txt")
    test = ["index\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    for index, row in enumerate(rows):
        fields = _msr_fields(row, source / "msr_paraphrase_test.txt", index + 2)
        test.append("\t".join([str(index)] + fields[1:]))

    out.mkdir()
    for name, lines in [("train.tsv", train), ("dev.tsv", dev), ("test.tsv", test)]:
        (out / name).write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    shutil.copyfile(source / "mrpc_dev_ids.tsv", out / "dev_ids.tsv")


def _read_lines(path: Path) -> list[str]:
    """Lines without their ends; '\r\n', '\r' and '\n' all end a line (Python's universal newlines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise KdError(f"{path}: not UTF-8 (byte {e.start} of the file)") from None
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


def _msr_fields(row: str, path: Path, line_no: int) -> list[str]:
    fields = row.strip().split("\t")
    if len(fields) != 5:
        raise KdError(f"{path}:{line_no}: expected 5 tab-separated columns, got {len(fields)}")
    return fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kd_ref.data.download", description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path, help="GLUE root folder to fill")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks (default: all nine)")
    args = parser.parse_args(argv)
    try:
        folders = [get_task(name.strip()).folder for name in args.tasks.split(",")]
        for folder in folders:
            download_task(args.dir, folder)
    except KdError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
