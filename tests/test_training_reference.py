"""The training program against the plain recipe it is measured against (backend/training/plain_loop.py):
on the same data and settings, train() gives the plain loop's loss at every step, on either path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backend.training.job_folder import JobFiles, read_metrics
from backend.training.lora import train
from backend.training.plain_loop import train_plain
from backend.training.processes import StopFlag
from backend.training.spec import preset
from tests.test_training_packed import EXAMPLES, MAX_LENGTH, PIXELS, RECORDS

# fp32 on the CPU, dropout off: the two programs differ only in the order they sum in (attention per
# sample or over a padded batch, logits for answer positions or for all, LoRA as one product or two),
# and in metrics.jsonl's rounding to 6 decimals. Over these four steps that moved a loss by at most
# 1.0e-6 of itself on packed rows and 8e-8 on padded batches (measured on a CPU, 2026-12); Adam
# makes it grow, step by step, where a gradient is near zero (1.2e-5 by the twelfth step). 1e-4
# leaves room for other CPUs' kernels, while a real difference in what is learned moved the losses
# by 6e-3 to 6e-2 (each micro-batch normalised by its own answer tokens) or 7e-2 to 1.4e-1 (each
# sample's last answer token left out of the loss).
RELATIVE = 1e-4


@pytest.fixture(scope="module")
def reference(tiny_models, tmp_path_factory):
    """The plain loop's losses, and the spec it ran: 8 samples (each record twice, so a picture is
    shown by several samples), 2 epochs of 2 steps of 2 micro-batches of 2 samples."""
    folder = tmp_path_factory.mktemp("reference")
    records = [{**record, "id": f"{record['id']}-{copy}"} for copy in range(2) for record in RECORDS]
    data = folder / "samples.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    spec = preset("demo-cpu", model=str(tiny_models["qwen2_vl"]), data_file=str(data), image_root=str(EXAMPLES),
                  lora_dropout=0.0, epochs=2, batch_size=2, grad_accum=2, save_every=0, max_image_pixels=PIXELS,
                  max_length=MAX_LENGTH, output_dir=str(folder / "job"))
    return spec, train_plain(spec, torch.device("cpu")).losses


@pytest.mark.parametrize("packed", [True, False], ids=["packed rows", "padded batches"])
def test_train_gives_the_plain_loops_loss_at_every_step(reference, tmp_path: Path, packed: bool) -> None:
    spec, plain = reference
    spec = spec.with_changes(packed=packed, output_dir=str(tmp_path / "job"))
    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir()
    assert train(spec, files, StopFlag()) == 0
    ours = [record["loss"] for record in read_metrics(files.metrics) if "loss" in record]
    assert len(ours) == len(plain) == 4
    assert ours[-1] < ours[0]  # it learns: equal losses are not equally stuck ones
    for step, (got, want) in enumerate(zip(ours, plain, strict=True), start=1):
        assert abs(got - want) <= RELATIVE * abs(want), (step, got, want, ours, plain)


@pytest.mark.parametrize("family", ["qwen3_vl", "internvl3_5"])
def test_packed_rows_of_the_new_fast_path_families_give_the_plain_loops_loss(tiny_models, tmp_path: Path,
                                                                          family: str) -> None:
    """Qwen3-VL (interleaved M-RoPE, DeepStack) and InternVL3.5 (1-D positions, tiled photos) on packed rows,
    two steps of two micro-batches, against the plain recipe on the same samples."""
    records = [{**record, "id": f"{record['id']}-{copy}"} for copy in range(2) for record in RECORDS]
    data = tmp_path / "samples.json"
    data.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    spec = preset("demo-cpu", model=str(tiny_models[family]), data_file=str(data), image_root=str(EXAMPLES),
                  lora_dropout=0.0, epochs=1, batch_size=2, grad_accum=2, save_every=0, max_image_pixels=PIXELS,
                  max_length=MAX_LENGTH, output_dir=str(tmp_path / "plain"))
    plain = train_plain(spec, torch.device("cpu")).losses
    spec = spec.with_changes(packed=True, output_dir=str(tmp_path / "ours"))
    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir()
    from backend.training.model import model_type_of, packs

    assert packs(spec, model_type_of(spec))
    assert train(spec, files, StopFlag()) == 0
    ours = [record["loss"] for record in read_metrics(files.metrics) if "loss" in record]
    assert len(ours) == len(plain) == 2
    for step, (got, want) in enumerate(zip(ours, plain, strict=True), start=1):
        assert abs(got - want) <= RELATIVE * abs(want), (step, got, want, ours, plain)
