"""Sharded training (FSDP2, backend/training/sharding.py) against one process: two gloo processes
under torchrun give one process's loss at every step, on the tiny demo model, for a full fine-tune
of the language model and for LoRA; a sharded job resumes exactly; what it saves loads back; and
the same job runs as two "nodes" meeting through torchrun's rendezvous (docs/training.md)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.training.demo_data import demo_records, demo_spec
from backend.training.job_folder import JobFiles, read_metrics, ready_checkpoints
from backend.training.lora import train
from backend.training.processes import Dist, StopFlag
from backend.training.schedule import epoch_order, step_parts
from backend.training.spec import JobSpec
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
# Two processes and one sum their losses in a different order; over these 20 steps that moved a
# loss by 1e-6 at most (metrics.jsonl's rounding; CPU, 2026-12). Dealing a step's samples
# differently, or each rank dividing by its own answer tokens, moves them by 1e-2 and more.
SAME_LOSS = 1e-3
SAMPLES = 57  # 2 epochs of 10 steps of 6: nine whole steps and one of 3 (2 samples on one rank, 1 on the other)
TWO_PROCESSES = {"batch_size": 3, "shard": True}


@pytest.fixture(scope="module")
def job(demo_workdir: Path, tmp_path_factory):
    """A spec maker: the demo preset on the first 57 bundled samples, 2 epochs of 10 steps of 6."""
    folder = tmp_path_factory.mktemp("sharded")
    data = folder / "samples.json"
    data.write_text(json.dumps(demo_records()[:SAMPLES], ensure_ascii=False), encoding="utf-8")
    held_out = folder / "held-out.json"  # 3 samples: one rank's share is a sample short
    held_out.write_text(json.dumps(demo_records()[SAMPLES : SAMPLES + 3], ensure_ascii=False), encoding="utf-8")

    def make(name: str, **changes) -> JobSpec:
        out = folder / name
        out.mkdir()
        settings = dict(data_file=str(data), epochs=2, batch_size=6, save_every=0, lora_r=8, lora_alpha=16,
                        output_dir=str(out))
        spec = demo_spec(demo_workdir, **{**settings, **changes})
        spec.save(out / "spec.json")
        return spec
    make.held_out = held_out
    return make


def in_this_process(spec: JobSpec) -> JobFiles:
    files = JobFiles(Path(spec.output_dir))
    assert train(spec, files, StopFlag()) == 0
    return files


def torchrun(spec: JobSpec, *launch: str, log_name: str = "torchrun.log") -> subprocess.Popen:
    """The training program under torchrun, with gloo between CPU processes."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    with (Path(spec.output_dir) / log_name).open("w") as out:  # the child keeps its own copy of the file
        return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *launch, "-m",
                                 "backend.training.lora", str(Path(spec.output_dir) / "spec.json")],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def finished(runs: list[subprocess.Popen], spec: JobSpec) -> JobFiles:
    files = JobFiles(Path(spec.output_dir))
    try:
        codes = [run.wait(timeout=300) for run in runs]
    finally:  # a launch left waiting for one that failed: it and its ranks
        for run in runs:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    logs = "\n".join(path.read_text(errors="replace")[-3000:] for path in files.root.glob("*.log"))
    assert codes == [0] * len(runs), logs
    return files


def losses(files: JobFiles, key: str = "loss") -> dict[int, float]:
    return {record["step"]: record[key] for record in read_metrics(files.metrics) if key in record}


def assert_same_losses(ours: dict[int, float], one_process: dict[int, float]) -> None:
    assert sorted(ours) == sorted(one_process), (ours, one_process)
    assert max(abs(ours[step] - one_process[step]) for step in ours) <= SAME_LOSS, (ours, one_process)


# ---- a full fine-tune of the language model ----------------------------------------------------


@pytest.fixture(scope="module")
def full_runs(job):
    """One process, and two under torchrun --standalone (as the worker starts several GPUs): the
    packed path, each sample a row of its own (pack_tokens=1), so the last step's rank with one
    sample runs an extra pass that counts nothing while the other runs its second."""
    settings = dict(full_language_model=True, learning_rate=1e-3)
    one = in_this_process(job("full-one", **settings))
    sharded = job("full-two", **settings, **TWO_PROCESSES, pack_tokens=1, save_every=10)
    two = finished([torchrun(sharded, "--standalone", "--nproc_per_node=2")], sharded)
    return one, two, sharded


def test_the_last_step_gives_the_ranks_different_numbers_of_samples() -> None:
    """The premise of full_runs' extra pass, from the order the job deals."""
    order = epoch_order(SAMPLES, 42, 0, Dist())
    assert [len(step_parts(order, 3, Dist(rank, world=2))[-1]) for rank in range(2)] == [2, 1]


def test_a_sharded_full_fine_tune_on_two_processes_gives_one_process_loss(full_runs) -> None:
    one, two, _ = full_runs
    assert "FSDP2: 4 decoder layers" in two.log.read_text() and "2 processes" in two.log.read_text()
    one_process = losses(one)
    assert len(one_process) == 20 and one_process[20] < one_process[1] - 1  # it learns
    assert_same_losses(losses(two), one_process)


def test_a_sharded_full_fine_tune_saves_whole_models_that_transformers_loads(full_runs, demo_workdir) -> None:
    from transformers import AutoModelForImageTextToText

    from backend.models.demo import ensure_demo_model

    one, two, _ = full_runs
    assert [step for step, _ in ready_checkpoints(two)] == [10]
    assert not two.adapter.exists()
    base = AutoModelForImageTextToText.from_pretrained(ensure_demo_model(demo_workdir).location)
    alone = AutoModelForImageTextToText.from_pretrained(one.model)
    for folder in (two.model, two.checkpoints / "step-000010"):
        AutoModelForImageTextToText.from_pretrained(folder)  # a whole model, processor and all
    sharded = AutoModelForImageTextToText.from_pretrained(two.model)
    for name in ("lm_head.weight", "model.language_model.layers.3.mlp.down_proj.weight"):
        trained, moved = sharded.get_parameter(name), alone.get_parameter(name)
        assert (trained - base.get_parameter(name)).abs().max() > 1e-2  # trained ...
        assert torch.allclose(trained, moved, atol=1e-4)  # ... as one process trained it
    assert torch.equal(sharded.model.visual.merger.mlp[0].weight, base.model.visual.merger.mlp[0].weight)


def test_chat_and_compare_offer_a_full_fine_tune_s_models_and_answer_as_they_do(full_runs, demo_workdir,
                                                                                tiny_models, tmp_path) -> None:
    """A full fine-tune writes whole model folders, not adapters: the job's checkpoint list offers them,
    and the engine serves each as a model of its own beside the base, answering as the folder loaded
    alone does; a whole model of another family is refused with a sentence."""
    import shutil

    from backend.catalog import ensure_adapter, model_choices
    from backend.inference.engine import AdapterMismatch, GenerationSettings, Turn
    from backend.inference.transformers_engine import TransformersEngine
    from backend.models.demo import ensure_demo_model
    from backend.models.loading import load, resolve
    from backend.training.export import ExportError, export_source
    from backend.training.jobs import JobStore

    _, two, spec = full_runs
    store = JobStore(tmp_path)
    job = store.submit(spec.with_changes(output_dir=""))
    shutil.copytree(two.model, job.files.model)
    shutil.copytree(two.checkpoints, job.files.checkpoints)
    choices = [c for c in model_choices(store) if c.step is not None]
    assert [(c.step, c.final) for c in choices] == [(20, True), (10, False)]

    engine = TransformersEngine(load(ensure_demo_model(demo_workdir)))
    turns = [Turn("user", "这是什么菜？", (str(ROOT / "examples" / "images" / "jiaozi-0.jpg"),))]
    quick = GenerationSettings(max_new_tokens=8)
    base_answer = engine.generate_batch([turns], quick)[0]
    for choice in choices:
        name = ensure_adapter(engine, choice)
        alone = TransformersEngine(load(resolve(str(choice.adapter_dir))))
        assert engine.generate_batch([turns], quick, adapter=name)[0] == alone.generate_batch([turns], quick)[0]
    side_by_side = {0: "", 1: ""}
    for row, piece in engine.stream_many([(turns, None), (turns, choices[0].adapter_name)], quick):
        side_by_side[row] += piece
    assert side_by_side[0] == base_answer != side_by_side[1]  # the base is untouched, the tuned one differs
    with pytest.raises(AdapterMismatch, match="not on the model this app serves"):
        engine.load_adapter("other", str(tiny_models["llava"]))
    with pytest.raises(ExportError, match="whole model"):
        export_source(job.files.root)


def test_a_sharded_job_resumes_where_it_stopped_with_the_same_losses(full_runs) -> None:
    """The run cut back to its checkpoint at step 10, as a stop leaves it, and started again."""
    import shutil

    _, two, spec = full_runs
    first = losses(two)
    shutil.rmtree(two.model)
    again = finished([torchrun(spec, "--standalone", "--nproc_per_node=2", log_name="again.log")], spec)
    assert "resumed from checkpoint step-000010 (step 10" in again.log.read_text()
    resumed = losses(again)
    assert sorted(resumed) == list(range(1, 21))
    assert max(abs(resumed[step] - first[step]) for step in range(11, 21)) <= 1e-6


# ---- LoRA, as two "nodes" ----------------------------------------------------------------------


def test_sharded_lora_on_two_nodes_meeting_by_rendezvous_gives_one_process_loss(job) -> None:
    """Two torchrun launches of one process each, as two machines would start them (--nnodes=2 and
    torchrun's c10d rendezvous), on padded batches; with held-out samples that do not share evenly."""
    from safetensors.torch import load_file

    settings = dict(packed=False, eval_file=str(job.held_out))
    one = in_this_process(job("lora-one", **settings))
    sharded = job("lora-nodes", **settings, **TWO_PROCESSES)
    meet = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}",
            "--rdzv_id=sharded-test"]
    nodes = finished([torchrun(sharded, *meet, f"--node_rank={rank}", log_name=f"node{rank}.log")
                      for rank in range(2)], sharded)
    assert "2 processes" in nodes.log.read_text()
    assert_same_losses(losses(nodes), losses(one))
    assert_same_losses(losses(nodes, "eval_loss"), losses(one, "eval_loss"))
    ours, theirs = (load_file(files.adapter / "adapter_model.safetensors") for files in (nodes, one))
    assert ours.keys() == theirs.keys() and all(torch.allclose(ours[k], theirs[k], atol=1e-4) for k in ours)


# ---- checkpoints written before the state_dict helpers ------------------------------------------


def test_a_checkpoint_with_the_optimizers_numbered_state_still_resumes(job, caplog) -> None:
    """Checkpoints written before (optimizer.state_dict(): parameters numbered in the optimizer's
    order, and no full_language_model in the spec) resume with the losses of the run not stopped."""
    import shutil

    spec = job("numbered", save_every=10)
    files = in_this_process(spec)
    first = losses(files)
    state_file = files.checkpoints / "step-000010" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=True)
    names = [name for group in state["optimizer"]["param_groups"] for name in group["params"]]
    state["optimizer"] = {"state": {names.index(name): value for name, value in state["optimizer"]["state"].items()},
                          "param_groups": [{**group, "params": [names.index(n) for n in group["params"]]}
                                           for group in state["optimizer"]["param_groups"]]}
    del state["spec"]["full_language_model"]
    torch.save(state, state_file)
    shutil.rmtree(files.adapter)
    caplog.set_level(logging.INFO, logger="foodie.train")
    again = in_this_process(spec)
    assert "resumed from checkpoint step-000010" in caplog.text
    resumed = losses(again)
    assert max(abs(resumed[step] - first[step]) for step in range(11, 21)) <= 1e-6


def test_rows_are_split_where_their_tokens_halve_keeping_the_samples_order() -> None:
    """What a sharded rank with fewer packed rows than another does before it runs an extra pass."""
    from types import SimpleNamespace

    from backend.training.packed import split_rows_further

    a, b, c, d = (SimpleNamespace(length=n) for n in (10, 10, 30, 5))
    assert split_rows_further([[a, b, c], [d]], 3) == [[a, b], [c], [d]]  # the longest row, cut nearest half
    assert split_rows_further([[a, b, c], [d]], 4) == [[a], [b], [c], [d]]
    assert split_rows_further([[a, b, c], [d]], 9) == [[a], [b], [c], [d]]  # one sample a row at most
    assert split_rows_further([[a, b, c], [d]], 1) == [[a, b, c], [d]]
