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
from backend.taste_notes import TasteNotes
from backend.training.jobs import JobStore
from backend.training.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    source: loading.ModelSource
    engine: Engine
    max_pixels: int
    examples: list[QuickExample]
    jobs: JobStore
    notes: TasteNotes = None  # corrections given in Chat and Compare, a training set of their own
    worker: Supervisor | None = None  # the app's training worker, once app.py started it

    def __post_init__(self) -> None:
        if self.notes is None:
            self.notes = TasteNotes(self.settings.workdir)


def choose_engine(settings: Settings, source: loading.ModelSource) -> tuple[str, str]:
    """(engine name, why): LMDeploy where a GPU and LMDeploy are there, transformers elsewhere."""
    import torch

    from backend.inference.lmdeploy_server import default_command
    from backend.models.families import FAMILIES

    has_gpu = torch.cuda.is_available() and settings.device != "cpu"
    has_lmdeploy = default_command(settings.workdir) is not None
    family = FAMILIES.get(getattr(source, "family", None))
    if settings.engine == "transformers":
        return "transformers", "asked for with --engine transformers"
    if family is not None and not family.lmdeploy:  # the registry: LMDeploy 0.18 does not serve it
        if settings.engine == "lmdeploy":
            raise loading.ModelLoadError(f"--engine lmdeploy: LMDeploy does not serve {family.label} models; "
                                         "use --engine transformers (or auto).")
        return "transformers", f"auto: LMDeploy does not serve {family.label} models"
    if settings.engine == "lmdeploy":
        if not has_gpu:
            raise loading.ModelLoadError("--engine lmdeploy needs a GPU (LMDeploy has no CPU device); "
                                         "use --engine transformers here.")
        if not has_lmdeploy:
            raise loading.ModelLoadError("--engine lmdeploy: LMDeploy is not installed; run `make gpu-extras`.")
        return "lmdeploy", "asked for with --engine lmdeploy"
    if has_gpu and has_lmdeploy:
        return "lmdeploy", "auto: a GPU and LMDeploy are present"
    return "transformers", "auto: " + ("no GPU" if not has_gpu else "LMDeploy is not installed (make gpu-extras)")


def build_engine(settings: Settings, source: loading.ModelSource) -> tuple[Engine, int]:
    """The engine and the picture budget its model uses."""
    name, why = choose_engine(settings, source)
    log.info("engine: %s (%s)", name, why)
    if name == "lmdeploy":
        try:
            return lmdeploy_engine(settings, source)
        except loading.ModelLoadError as err:
            if not why.startswith("auto"):  # asked for by name: the app stops and says why
                raise
            # e.g. Qwen3.5 in an LMDeploy environment without flash-linear-attention: the model still serves
            log.warning("LMDeploy could not serve this model, so transformers does. %s", err)
    loaded = loading.load(source, settings.device)
    engine = TransformersEngine(loaded)
    warm_up(engine)
    return engine, loaded.max_pixels


def lmdeploy_engine(settings: Settings, source: loading.ModelSource) -> tuple[Engine, int]:
    from backend.inference.lmdeploy_engine import LMDeployEngine
    from backend.inference.lmdeploy_server import LMDeployServer, ServerError, ServerOptions

    processor = loading.load_processor(source)
    server = LMDeployServer(ServerOptions(model=source.location, workdir=settings.workdir,
                                          cache_share=settings.kv_cache_share, tp=settings.tp))
    try:
        server.start()
    except ServerError as err:
        raise loading.ModelLoadError(str(err)) from None
    max_pixels = loading.max_pixels_of(processor)
    return LMDeployEngine(server, max_pixels), max_pixels


def warm_up(engine: TransformersEngine) -> None:
    """One tiny answer about a bundled picture, so the first visitor does not pay for the
    one-off costs (kernel selection, processor caches): measured 1.5 s vs 0.5 s on the CPU."""
    from backend.inference.engine import GenerationSettings, Turn

    picture = next(iter(quick_examples(None)), None)
    turns = [Turn("user", "?", (str(picture.image),) if picture else ())]
    try:
        engine.generate_batch([turns], GenerationSettings(max_new_tokens=2))
    except Exception as err:  # a warm-up must never stop the app from starting
        log.warning("warm-up failed: %s", err)


def start(settings: Settings) -> Services:
    """Resolve and load the model, pick the engine, find the quick examples.

    Raises loading.ModelLoadError with a sentence for anything a person can fix."""
    settings.workdir.mkdir(parents=True, exist_ok=True)
    source = loading.resolve(settings.model) if settings.model else ensure_demo_model(settings.workdir)
    engine, max_pixels = build_engine(settings, source)
    return Services(settings=settings, source=source, engine=engine,
                    max_pixels=max_pixels, examples=quick_examples(settings.data),
                    jobs=JobStore(settings.workdir))
