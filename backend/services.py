"""Everything the UI needs, built once per app process from the settings (no gradio here)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from backend.inference.engine import Engine
from backend.inference.transformers_engine import TransformersEngine
from backend.models import loading
from backend.models.demo import ensure_demo_model
from backend.quick_examples import QuickExample, quick_examples
from backend.settings import Settings
from backend.training.jobs import JobStore

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    source: loading.ModelSource
    engine: Engine
    max_pixels: int
    examples: list[QuickExample]
    jobs: JobStore


def choose_engine(requested: str, loaded: loading.LoadedModel) -> Engine:
    """transformers serves everywhere today; LMDeploy joins `auto` with the GPU serving work."""
    if requested not in ("auto", "transformers"):
        raise loading.ModelLoadError(f"Unknown engine {requested!r}; choose auto or transformers.")
    engine = TransformersEngine(loaded)
    log.info("engine: %s (%s on %s)", engine.name, "picked by auto" if requested == "auto" else "asked for",
             loaded.device)
    return engine


def start(settings: Settings) -> Services:
    """Resolve and load the model, pick the engine, find the quick examples.

    Raises loading.ModelLoadError with a sentence for anything a person can fix."""
    settings.workdir.mkdir(parents=True, exist_ok=True)
    source = loading.resolve(settings.model) if settings.model else ensure_demo_model(settings.workdir)
    loaded = loading.load(source, settings.device)
    return Services(settings=settings, source=source, engine=choose_engine(settings.engine, loaded),
                    max_pixels=loaded.max_pixels, examples=quick_examples(settings.data),
                    jobs=JobStore(settings.workdir))
