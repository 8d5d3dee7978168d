"""LLaVA's two stages, as two jobs on the worker: the "llava-two-stage" preset.

1. Stage 1 trains the projector alone, everything else frozen, on caption pairs: a picture and a
   short description of it (LLaVA pretrains on 558 K such pairs). They are made from the chosen
   training data (`caption_pairs`): every sample with one picture gives its picture and its first
   answer, asked for with a plain "describe it" prompt, so any data set with one picture and one
   answer serves, the bundled sample included.
2. Stage 2 is the job the form describes (LoRA on the language model, the projector trained on), on
   the instructions themselves, starting from stage 1's projector (`projector_from`, loaded by
   trained_parts.load_projector). It waits in the queue until stage 1 has succeeded (`after_job`,
   worker.py: `waiting_for`).

A family without a projector (family_parts.py) is refused with a sentence before anything is queued.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from backend.models.family_parts import PARTS
from backend.problems import Problem
from backend.training.jobs import Job, JobError, JobStore
from backend.training.samples import SampleError, read_samples, write_samples
from backend.training.spec import JobSpec

# Stage 1's own settings, on top of the form's: LLaVA-1.5 pretrains the projector for one epoch at a
# learning rate of 1e-3 (ten times stage 2's, as a projector starting from random needs), no weight decay.
STAGE_1 = dict(trains="projector", learning_rate=1e-3, lr_schedule="cosine", warmup_ratio=0.03, weight_decay=0.0,
               epochs=1, eval_file="", merge=False, projector_from="", after_job="")
CAPTION_PROMPT = "<image>\nDescribe the picture briefly."


def submit_two_stage(store: JobStore, spec: JobSpec) -> tuple[Job, Job]:
    """Queue stage 1 on caption pairs from the spec's data, then the spec itself as stage 2, waiting for
    stage 1 and starting from its projector. Returns both jobs."""
    refuse_without_projector(spec)
    captions = caption_pairs(spec, store.workdir / "caption-pairs")
    name = spec.name or "llava"
    first = store.submit(spec.with_changes(**STAGE_1, data_file=str(captions), image_root=str(spec.images_dir),
                                           name=f"{name} · stage 1"))
    second = store.submit(spec.with_changes(after_job=first.id, projector_from=str(first.files.adapter),
                                            name=f"{name} · stage 2"))
    return first, second


def refuse_without_projector(spec: JobSpec) -> None:
    from backend.training.model import model_type_of

    model_type = model_type_of(spec)
    parts = PARTS.get(model_type)
    if parts is None or not parts.projector:
        why = parts.no_projector_why if parts else "Foodie Studio does not know where it keeps one"
        raise JobError(Problem("two_stage_no_projector", "The two-stage recipe trains the projector first, and this "
                               "{model_type} model has none to train: {why}.", model_type=model_type or "unknown",
                               why=why))


def caption_pairs(spec: JobSpec, folder: Path) -> Path:
    """The spec's training samples with one picture each, as (picture, first answer) pairs asked for with
    CAPTION_PROMPT; written under `folder`, named by their content."""
    try:
        samples, _ = read_samples(Path(spec.data_file), spec.images_dir)
    except SampleError as err:
        raise JobError(Problem("data_unusable", "The training data cannot be used: {why}", why=str(err))) from None
    root = spec.images_dir.resolve()
    records = []
    for sample in samples:
        if len(sample.images) != 1 or not sample.answers:
            continue
        picture = sample.images[0].resolve()
        records.append({"id": f"caption-{sample.id}",
                        "image": str(picture.relative_to(root)) if picture.is_relative_to(root) else str(picture),
                        "conversations": [{"from": "human", "value": CAPTION_PROMPT},
                                          {"from": "gpt", "value": sample.answers[0]}]})
    if not records:
        raise JobError(Problem("two_stage_no_captions", "Stage 1 needs samples with one picture and an answer to "
                               "use as its caption, and {path} has none.", path=spec.data_file))
    import json

    digest = hashlib.sha256(json.dumps(records, ensure_ascii=False).encode()).hexdigest()[:12]
    return write_samples(records, folder / f"captions-{digest}.json")
