"""Accuracy at every checkpoint: the training program scores each checkpoint on the job's evaluation
set with the model it trains, as Compare would score the saved adapter; the best is kept when asked;
a job stops early when accuracy stops improving; an evaluation set it trains on is said to be one."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from backend.data import build_training_set, read_bundled_sample
from backend.evaluation.scoring import score
from backend.inference.transformers_engine import TransformersEngine
from backend.models import loading
from backend.training.checkpoint_scores import SCORES_FILE, BestSoFar, evaluation_set
from backend.training.job_folder import EXIT_OK, JobFiles, read_metrics, ready_checkpoints
from backend.training.lora import train
from backend.training.processes import StopFlag
from backend.training.samples import read_samples
from backend.training.spec import SCORE_METHODS, SpecError, preset


@pytest.fixture(scope="module")
def sivqa_set(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sets") / "sivqa"
    build_training_set(read_bundled_sample().records, folder, heldout_ratio=0.3, tasks=("sivqa",), seed=3)
    return folder


def job(demo_workdir: Path, folder: Path, out: Path, **changes):
    model = next((demo_workdir / "models").iterdir())
    settings = {"epochs": 2, "save_every": 2, "keep_last": 1, **changes}
    return preset("demo-cpu", model=str(model), data_file=str(folder / "train.json"),
                  eval_file="", image_root=json.loads((folder / "split.json").read_text())["image_root"],
                  output_dir=str(out), score_set=str(folder), **settings)


def run(spec) -> JobFiles:
    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir(parents=True, exist_ok=True)
    assert train(spec, files, StopFlag()) == EXIT_OK
    return files


@pytest.mark.parametrize("method", SCORE_METHODS)
def test_each_checkpoint_is_scored_as_compare_scores_its_adapter(demo_workdir, sivqa_set, tmp_path, caplog, method):
    with caplog.at_level(logging.INFO, logger="foodie.train"):
        files = run(job(demo_workdir, sivqa_set, tmp_path / "job", score_method=method))
    scored = [r for r in read_metrics(files.metrics) if "eval_accuracy" in r]
    assert len(scored) > 1 and [r["step"] for r in scored] == sorted(r["step"] for r in scored)
    # the later checkpoints took the batches as prepared and the photos' features from the first scoring
    # (scoring.Preparation, picture_memo.py): 12 questions, one batch ...
    kept = [m for m in caplog.messages if m.startswith("kept from an earlier scoring")]
    assert kept == ["kept from an earlier scoring: 1 batch as prepared, the photos' features of 1"] * (len(scored) - 1)
    assert all(r["eval_set"] == "held-out · sivqa" and r["trained_on"] is False and r["eval_method"] == method
               for r in scored)
    final_step, final = ready_checkpoints(files)[-1]  # the last step of a scored job is a checkpoint
    assert final_step == scored[-1]["step"]
    kept = json.loads((final / SCORES_FILE).read_text(encoding="utf-8"))
    # Compare's way: the base model with the saved adapter loaded, the same questions, batch and settings
    engine = TransformersEngine(loading.load(loading.resolve(next((demo_workdir / "models").iterdir()).as_posix()),
                                             "cpu"))
    engine.load_adapter("final", str(final))
    spec = job(demo_workdir, sivqa_set, tmp_path / "unused")
    again = score(engine, evaluation_set(spec, []).questions, adapter="final", lang="zh", batch_size=16, method=method)
    # ... and still answered as Compare's fresh engine does
    assert [q["reply"] for q in kept["questions"]] == [q.reply for q in again.questions]
    assert kept["accuracy"] == pytest.approx(scored[-1]["eval_accuracy"], abs=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_bf16_job_on_a_gpu_scores_its_checkpoints(demo_workdir, sivqa_set, tmp_path):
    # bf16 weights and fp32 LoRA weights: the scoring's forward needs the job's autocast, as training's
    # does (a 2B job on an H100 failed at its first checkpoint without it, 2026-12-07)
    files = run(job(demo_workdir, sivqa_set, tmp_path / "job", device="cuda", bf16=True))
    assert sum("eval_accuracy" in r for r in read_metrics(files.metrics)) > 1


def test_keep_the_best_makes_the_best_checkpoint_the_final_adapter(demo_workdir, sivqa_set, tmp_path):
    files = run(job(demo_workdir, sivqa_set, tmp_path / "job", epochs=4, save_every=1, keep_best=True))
    scored = [r for r in read_metrics(files.metrics) if "eval_accuracy" in r]
    best = max(scored, key=lambda r: (r["eval_accuracy"], -r["step"]))  # ties: the earlier step
    best_folder = files.checkpoints / f"step-{best['step']:06d}"
    assert best_folder.is_dir(), "the best checkpoint is not pruned"
    final = load_file(files.adapter / "adapter_model.safetensors")
    kept = load_file(best_folder / "adapter_model.safetensors")
    assert final.keys() == kept.keys() and all((final[k] == kept[k]).all() for k in final)


def test_early_stopping_stops_when_accuracy_stops_improving(demo_workdir, sivqa_set, tmp_path, caplog):
    spec = job(demo_workdir, sivqa_set, tmp_path / "job", epochs=10, save_every=1, early_stop_patience=2)
    with caplog.at_level("INFO", logger="foodie.train"):
        files = run(spec)
    scored = [r for r in read_metrics(files.metrics) if "eval_accuracy" in r]
    best = BestSoFar()
    stopped_at = None
    for record in scored:
        best.update(record["step"], record["eval_accuracy"])
        if best.patience_spent(2):
            stopped_at = record["step"]
            break
    last_step = max(r["step"] for r in read_metrics(files.metrics) if "loss" in r)
    assert stopped_at is not None and last_step == stopped_at < 10 * 2  # well before its 20 steps
    assert "stopping early" in caplog.text and (files.adapter / "adapter_model.safetensors").is_file()


def test_an_evaluation_set_the_job_trains_on_is_said_to_be_trained_on(demo_workdir, sivqa_set, tmp_path):
    spec = job(demo_workdir, sivqa_set, tmp_path / "job")
    samples, _ = read_samples(Path(spec.data_file), spec.images_dir)
    assert not evaluation_set(spec, samples).trained_on
    heldout, _ = read_samples(sivqa_set / "heldout.json", spec.images_dir)
    assert evaluation_set(spec, samples + heldout).trained_on  # its photos are in the training data


def test_keeping_the_best_or_stopping_early_needs_an_evaluation_set(demo_workdir, sivqa_set, tmp_path):
    with pytest.raises(SpecError, match="need an evaluation set"):
        job(demo_workdir, sivqa_set, tmp_path / "job", keep_best=True).with_changes(score_set="").validate()
