"""A job with `deterministic` on (lora.be_deterministic), run as the worker runs it: the training program
in a process of its own, which turns deterministic kernels on before its first product."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from backend.training.demo_data import demo_spec
from backend.training.job_folder import JobFiles, read_metrics

ROOT = Path(__file__).resolve().parents[1]


def run_job(spec, folder: Path) -> tuple[list[float], str]:
    files = JobFiles(folder)
    folder.mkdir(parents=True)
    spec.with_changes(output_dir=str(folder)).save(folder / "spec.json")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CUBLAS_WORKSPACE_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "backend.training.lora", str(folder / "spec.json")], env=env,
                          cwd=ROOT, timeout=300)
    log = files.log.read_text(errors="replace")
    assert done.returncode == 0, log[-2000:]
    return [r["loss"] for r in read_metrics(files.metrics) if "loss" in r], log


def test_a_deterministic_job_says_so_and_two_runs_give_the_same_losses(demo_workdir: Path, tmp_path: Path) -> None:
    spec = demo_spec(demo_workdir, epochs=1, lora_r=8, lora_alpha=16, save_every=0, deterministic=True)
    first, log = run_job(spec, tmp_path / "first")
    second, _ = run_job(spec, tmp_path / "second")

    assert "deterministic kernels" in log
    assert len(first) >= 2 and first == second
    _, plain_log = run_job(spec.with_changes(deterministic=False), tmp_path / "plain")
    assert "deterministic kernels" not in plain_log


def test_flash_attentions_backward_runs_strict_inside_a_lenient_deterministic_job() -> None:
    """Its kernel takes its deterministic form only when torch is strict (flash_varlen.py); the rest of
    the job stays lenient, and a job that did not ask stays as it was."""
    import torch

    from backend.training.flash_varlen import _strict_if_deterministic

    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        with _strict_if_deterministic():
            assert torch.are_deterministic_algorithms_enabled()
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()

        torch.use_deterministic_algorithms(False)
        with _strict_if_deterministic():
            assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
