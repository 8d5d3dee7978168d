"""The demo model: built once, cached under the work folder, used when no --model is given."""

from __future__ import annotations

import logging
from pathlib import Path

from backend.models.loading import ModelSource
from backend.models.tiny import build_tiny_model

log = logging.getLogger(__name__)

DEMO_FAMILY = "qwen2_vl"
# Bump when the builder changes in a way that makes an old cached demo model wrong.
DEMO_VERSION = 1


def demo_model_dir(workdir: Path) -> Path:
    return Path(workdir) / "models" / f"demo-{DEMO_FAMILY}-v{DEMO_VERSION}"


def ensure_demo_model(workdir: Path) -> ModelSource:
    folder = demo_model_dir(workdir)
    if not (folder / "config.json").is_file():
        log.info("building the demo model at %s (once)", folder)
        build_tiny_model(DEMO_FAMILY, folder)
    return ModelSource(str(folder), DEMO_FAMILY, is_demo=True, is_tiny=True)
