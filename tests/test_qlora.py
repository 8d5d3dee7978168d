"""QLoRA on a machine that cannot run it says why (bitsandbytes' 4-bit kernels need CUDA), and the fast
path's LoRA node over a 4-bit base computes what it computes over a plain one. The 4-bit kernels
themselves run on the GPU machine: bench/bench_qlora.py (bench/README.md "QLoRA")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from backend.training.job_folder import EXIT_FAILED, JobFiles
from backend.training.lora_forward import LoraLinear
from backend.training.qlora import bitsandbytes_installed, qlora_shortfall
from backend.training.spec import JobSpec, preset
from tests.conftest import ROOT
from tests.test_training_packed import EXAMPLES, RECORDS


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here: QLoRA can run")
def test_a_qlora_job_on_the_cpu_ends_with_a_sentence(tiny_models, tmp_path):
    """Queued some other way than the Train tab (which refuses it at once), the training program says it."""
    data = tmp_path / "samples.json"
    data.write_text(json.dumps(RECORDS, ensure_ascii=False), encoding="utf-8")
    spec = preset("demo-cpu", model=str(tiny_models["qwen2_vl"]), data_file=str(data), image_root=str(EXAMPLES),
                  device="auto", qlora=True, output_dir=str(tmp_path / "job"))
    files = JobFiles(tmp_path / "job")
    files.root.mkdir()
    spec.save(files.spec)
    done = subprocess.run([sys.executable, "-m", "backend.training.lora", str(files.spec)], cwd=ROOT,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, timeout=300)
    assert done.returncode == EXIT_FAILED
    result = json.loads(files.result.read_text(encoding="utf-8"))
    assert result["problem"]["key"] == "qlora_job_on_cpu"
    assert "QLoRA needs a GPU (bitsandbytes' 4-bit kernels run on CUDA), and this job runs on the CPU" in (
        result["error"])


@pytest.mark.skipif(bitsandbytes_installed(), reason="bitsandbytes is installed here")
def test_qlora_without_bitsandbytes_is_a_sentence_even_with_a_gpu():
    problem = qlora_shortfall(JobSpec(qlora=True), gpus=["0"])
    assert problem.key == "qlora_no_bitsandbytes" and "pip install bitsandbytes" in problem
    assert qlora_shortfall(JobSpec(qlora=True), gpus=[]).key == "qlora_no_gpu"
    assert qlora_shortfall(JobSpec(qlora=False), gpus=[]) is None


class Weight:
    """What LoraLinear asks a 4-bit layer for (qlora.Dequantized): its weight in a dtype, each time anew.
    Here the weight is a plain tensor, so the node's arithmetic can be held to the plain layer's on a CPU,
    where bitsandbytes' dequantization does not run."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor, self.asked = tensor, 0

    def weight(self, dtype: torch.dtype) -> torch.Tensor:
        self.asked += 1
        return self.tensor.to(dtype)


@pytest.mark.parametrize("p", [0.0, 0.1])
def test_the_lora_node_over_a_weight_given_on_demand_computes_what_it_computes_over_a_plain_one(p):
    torch.manual_seed(0)
    w, bias = torch.randn(24, 16), torch.randn(24)
    a, b = torch.randn(4, 16, requires_grad=True), torch.randn(24, 4, requires_grad=True)
    x = torch.randn(10, 16, requires_grad=True)
    results = []
    for quantized in (None, Weight(w)):
        torch.manual_seed(1)  # the same dropout mask
        out = LoraLinear.apply(x, None if quantized else w, bias, a, b, 2.0, p, None, None, quantized)
        grads = torch.autograd.grad(out.square().sum(), (x, a, b))
        results.append((out, *grads))
        if quantized is not None:
            assert quantized.asked == 2  # made for the product and again for x's gradient: never kept between
    for plain, on_demand in zip(*results, strict=True):
        assert torch.equal(plain, on_demand)
