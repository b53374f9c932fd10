"""What every reader's tests share (`make compat`): the dataset and its documents.

Runs against `$GTCOCO_COMPAT_DATASET` (built by `tests/compat/build_dataset.py`); every
reader is the real package, each in its own venv pinned by `requirements-compat-<reader>.txt`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("GTCOCO_COMPAT_DATASET", "build/compat-dataset"))
SPLITS = ("train", "val")


def doc(kind: str, split: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "annotations" / f"{kind}_{split}.json").read_text())
    return data


def quiet_coco(path: Path) -> Any:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return COCO(str(path))


