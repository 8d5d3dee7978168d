"""LLaVA's two stages (backend/training/two_stage.py) as two real jobs on the real worker: stage 1 trains
the projector alone on caption pairs made from the bundled sample and its loss falls; stage 2 waits
until stage 1 has succeeded and starts from its projector. A family without a projector is refused
before anything is queued."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from backend.bundled import EXAMPLES_DIR
from backend.training.demo_data import write_demo_dataset
from backend.training.job_folder import read_metrics
from backend.training.jobs import JobError, JobStore
from backend.training.spec import preset
from backend.training.two_stage import CAPTION_PROMPT, caption_pairs, submit_two_stage
from backend.training.worker import waiting_for
from tests.test_training_worker import Workers, wait_for


def two_stage_spec(model: Path, folder: Path, **changes):
    """The two-stage preset on the bundled sample, made small enough for a CPU."""
    data = write_demo_dataset(folder / "demo.json")
    return preset("llava-two-stage", model=str(model), data_file=str(data), image_root=str(EXAMPLES_DIR),
                  device="cpu", bf16=False, gradient_checkpointing=False, lora_r=8, lora_alpha=16, batch_size=4,
                  grad_accum=1, learning_rate=1e-3, save_every=0, data_workers=0, threads=1, name="llava",
                  **changes)


def projector_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key.split("multi_modal_projector.", 1)[1]: value for key, value in state.items()
            if "multi_modal_projector." in key and ".lora_" not in key}


def test_caption_pairs_come_from_samples_with_one_picture_and_an_answer(tmp_path):
    spec = two_stage_spec(Path("unused"), tmp_path)
    pairs = json.loads(caption_pairs(spec, tmp_path / "captions").read_text(encoding="utf-8"))
    demo = json.loads(Path(spec.data_file).read_text(encoding="utf-8"))
    assert len(pairs) == len(demo) > 10
    first = pairs[0]["conversations"]
    assert first[0]["value"] == CAPTION_PROMPT and first[1]["value"] == demo[0]["conversations"][1]["value"]
    assert (EXAMPLES_DIR / pairs[0]["image"]).is_file()


def test_stage_2_waits_for_stage_1_and_starts_from_its_projector(tiny_models, tmp_path):
    from backend.models.loading import load, resolve
    from backend.training.model import build_model

    store = JobStore(tmp_path / "runs")
    first, second = submit_two_stage(store, two_stage_spec(tiny_models["llava"], tmp_path))
    assert first.spec.trains == "projector" and second.spec.trains == "language-lora+projector"
    assert second.spec.after_job == first.id and second.spec.projector_from == str(first.files.adapter)

    # stage 1 cancelled while queued: stage 2 must not start in its place
    store.cancel(first.id)
    workers = Workers(store)
    try:
        workers.start()
        time.sleep(3)  # several of the worker's ticks
        assert store.get(second.id).state == "queued" and waiting_for(store, store.get(second.id)).id == first.id
        store.resume(first.id)
        done = wait_for("both stages", lambda: all(store.get(j.id).state in ("succeeded", "failed")
                                                   for j in (first, second)), timeout=600, job=second)
        assert done
    finally:
        workers.close()
    first, second = store.get(first.id), store.get(second.id)
    assert (first.state, second.state) == ("succeeded", "succeeded"), (first.error, second.error)
    assert second.started >= first.finished

    # stage 1 trained the projector alone, and its loss fell
    losses = [record["loss"] for record in read_metrics(first.files.metrics) if "loss" in record]
    assert len(losses) >= 6 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    from safetensors.torch import load_file

    stage_1 = load_file(str(first.files.adapter / "adapter_model.safetensors"))
    assert stage_1 and not any(".lora_" in key for key in stage_1)

    # stage 2's model, as its job builds it, starts from stage 1's projector (not the base's)
    model = build_model(second.spec, torch.device("cpu"), torch.float32).model
    wrapper = model.get_base_model().model.multi_modal_projector
    start = projector_of({f"multi_modal_projector.{k}": v for k, v in wrapper.modules_to_save["default"]
                          .state_dict().items()})
    trained = projector_of(stage_1)
    assert start.keys() == trained.keys() and all(torch.equal(start[k], trained[k]) for k in start)
    base = projector_of(load(resolve(str(tiny_models["llava"]))).model.state_dict())
    assert any(not torch.equal(base[k], trained[k]) for k in trained)


def test_a_family_without_a_projector_is_refused_before_anything_is_queued(tiny_models, tmp_path):
    store = JobStore(tmp_path / "runs")
    with pytest.raises(JobError) as caught:
        submit_two_stage(store, two_stage_spec(tiny_models["blip_2"], tmp_path))
    problem = caught.value.args[0]
    assert problem.key == "two_stage_no_projector" and "has none to train: BLIP-2 reaches" in problem
    assert store.list() == []
