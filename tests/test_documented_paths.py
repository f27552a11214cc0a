"""Every file, folder and module the documentation names exists, so that a move cannot silently break
a documented command (README, PORTING, the results and benchmark pages, weights/README, and the
research, speed and weights scripts, whose docstrings and comments carry their commands)."""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted({ROOT / "README.md", ROOT / "PORTING.md", ROOT / "weights" / "README.md", ROOT / "speed" / "BENCHMARKS.md",
               *ROOT.glob("experiments/RESULTS-*.md"), *ROOT.glob("experiments/*.sh"), *ROOT.glob("experiments/*.py"),
               *ROOT.glob("speed/*.py"), *ROOT.glob("speed/*.sh"), *ROOT.glob("weights/*.py")})
# A path into the repository: a tracked top folder (bench/: the research folder's former name), or run.py.
# runs/, out/ and ../shared are made by runs or live outside the repository: not checked.
PATH = re.compile(r"(?<![\w./-])(?:kd_ref|experiments|speed|tests|weights|bench)/[^\s`'\"()\[\],;:|>]*"
                  r"|(?<![\w./-])run\.py\b")
MODULE = re.compile(r"(?<![\w./-])kd_ref(?:\.\w+)+")
SCRIPT = re.compile(r"`(\w+\.(?:py|sh))`")  # a bare script name in backticks, as in a list of a folder's files
# Placeholders stand for many paths: {a,b}, *, <study>, $task, and the capitalised words of the commands.
PLACEHOLDER = re.compile(r"[{}*<>$]|\b(?:TASK|FOLDER|RATE|DIR|OUT)\b")


def named(pattern: re.Pattern) -> list[tuple[str, str]]:
    """(document, name) for every match of `pattern` in the documents, sentence punctuation stripped."""
    found = []
    for doc in DOCS:
        for match in pattern.finditer(doc.read_text()):
            for name in match.group(1 if pattern.groups else 0).split("+"):  # kd_table.py's "A+B" merges two folders
                found.append((str(doc.relative_to(ROOT)), name.rstrip(".")))
    return found


def checked_paths() -> list[tuple[str, str]]:
    paths = []
    for doc, path in named(PATH):
        if PLACEHOLDER.search(path):
            continue
        # weights/ holds fetched checkpoints (ignored by git) beside the tracked fetch.py and README.md
        if path.startswith("weights/") and not path.endswith((".py", ".md")):
            continue
        paths.append((doc, path))
    return paths


def resolves(dotted: str) -> bool:
    """kd_ref.a.b.C.d: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[n:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def test_the_documents_name_paths_and_modules():
    """The scan finds what it is for: a change to the patterns that matched nothing would pass vacuously."""
    paths = {p for _, p in checked_paths()}
    assert {"run.py", "speed/bench.py", "experiments/kd_table.py", "kd_ref/agent.py", "tests/numpy_port.py",
            "weights/fetch.py", "experiments/logs/study/mrpc"} <= paths
    assert {"kd_ref.golden", "kd_ref.data.download", "kd_ref.bert.Bert.head"} <= {m for _, m in named(MODULE)}


def test_every_documented_path_exists():
    missing = sorted({(doc, path) for doc, path in checked_paths() if not (ROOT / path).exists()})
    assert not missing, f"named in the documents but not in the repository: {missing}"


def test_every_bare_script_name_is_a_file_of_the_repository():
    """`outputs.py` in a list of kd_ref/plumbing's files: some file of the repository has that name."""
    tracked = {p.name for p in ROOT.rglob("*") if not {".git", "runs", "out"} & set(p.relative_to(ROOT).parts)}
    missing = sorted({(doc, name) for doc, name in named(SCRIPT) if name not in tracked})
    assert not missing, f"named in the documents but in no folder of the repository: {missing}"


def test_every_documented_module_and_name_imports():
    missing = sorted({(doc, name) for doc, name in named(MODULE) if not resolves(name)})
    assert not missing, f"named in the documents but not importable: {missing}"


@pytest.mark.parametrize("text, found", [("see `experiments/logs/study/mrpc`.", "experiments/logs/study/mrpc"),
                                         ("python run.py --demo", "run.py"),
                                         ("runs/study/TASK and ../shared/bench/x.py", None)])
def test_the_path_pattern(text, found):
    match = PATH.search(text)
    assert (match.group(0).rstrip(".") if match else None) == found
