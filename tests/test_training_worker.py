"""Real trainings of the demo model through the real worker: the happy path, and each fault the
Train tab promises to survive (SIGKILL, cancel, a killed worker, a second worker, a full disk)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from backend.training.demo_data import demo_spec
from backend.training.job_folder import CHECKPOINT_RE, read_metrics, ready_checkpoints
from backend.training.jobs import Job, JobStore, process_alive
from backend.training.worker import spawn, stop

ROOT = Path(__file__).resolve().parents[1]


def wait_for(what: str, predicate, timeout: float = 240, poll: float = 0.1, job: Job | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    log = job.files.log.read_text(errors="replace")[-3000:] if job and job.files.log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{log}")


def quick(demo_workdir: Path, **changes):
    """The demo preset, shortened: a few epochs with a checkpoint every 2 steps."""
    return demo_spec(demo_workdir, **{"epochs": 4, "save_every": 2, "lora_r": 8, "lora_alpha": 16,
                                      "name": "quick", **changes})


class Workers:
    """Worker processes started the way the app starts them; stopped (and their trainings
    killed) whatever the test's outcome."""

    def __init__(self, store: JobStore) -> None:
        self.store, self.procs = store, []

    def start(self, log_name: str = "worker.log") -> subprocess.Popen:
        proc = spawn(self.store.workdir, gpus="none", log_file=self.store.workdir / log_name)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            stop(proc)
        for job in self.store.list(("running",)):
            if job.pid and process_alive(job.pid, job.pid_start):
                os.killpg(job.pid, signal.SIGKILL)


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "runs")


@pytest.fixture
def workers(store: JobStore):
    started = Workers(store)
    yield started
    started.close()


def state_of(store: JobStore, job_id: str) -> str:
    return store.get(job_id).state


def finished(store: JobStore, job_id: str) -> Job | None:
    job = store.get(job_id)
    return job if job.state not in ("queued", "running") else None


def steps_logged(job: Job) -> list[int]:
    return [r["step"] for r in read_metrics(job.files.metrics) if "loss" in r]


# ---- the happy path and the bar --------------------------------------------------------------


def test_demo_preset_learns_the_dishes_through_the_worker(demo_workdir: Path, store: JobStore, workers) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    from backend.training.check import exact_answers, load_engine
    from backend.training.samples import read_samples

    spec = demo_spec(demo_workdir)
    held_out = store.workdir / "held-out.json"
    held_out.write_text(json.dumps(json.loads(Path(spec.data_file).read_text())[:8]))
    job = store.submit(spec.with_changes(eval_file=str(held_out), merge=True))
    started = time.monotonic()
    workers.start()

    seen_states, line_counts = {"queued"}, []
    while (current := store.get(job.id)).state in ("queued", "running"):
        seen_states.add(current.state)
        if job.files.metrics.exists():
            line_counts.append(len(read_metrics(job.files.metrics)))
        time.sleep(0.2)
        assert time.monotonic() - started < 400, store.log_tail(job.id)
    wall = time.monotonic() - started
    job = store.get(job.id)
    assert job.state == "succeeded", f"{job.error}\n{store.log_tail(job.id)}"
    assert seen_states == {"queued", "running"} and job.attempts == 1 and job.device == "cpu"
    assert len(set(line_counts)) > 2, "metrics.jsonl should grow while the job runs"
    print(f"\ndemo preset through the worker: {wall:.1f} s wall")

    # Metrics: every step logged once, held-out loss each epoch, and the loss came down.
    records = store.metrics(job.id)
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, train[-1]["total_steps"] + 1))
    assert train[-1]["loss"] < train[0]["loss"] / 20
    assert len([r for r in records if "eval_loss" in r]) == spec.epochs
    assert job.progress["step"] == job.progress["total_steps"]

    # The final adapter: peft's format, LoRA on the language model only.
    [*middle, final] = store.checkpoints(job.id)
    assert final.final and final.path == job.files.adapter and len(middle) == spec.keep_last
    weights = load_file(final.path / "adapter_model.safetensors")
    assert weights and all(".language_model." in key for key in weights)

    # It changes what the model says: from gibberish to the trained answers.
    samples, _ = read_samples(Path(spec.data_file), spec.images_dir)
    engine = load_engine(spec.model, {"tuned": final.path})
    tuned, base = exact_answers(engine, samples, "tuned"), exact_answers(engine, samples, None)
    print(f"exact answers: tuned {tuned.exact}/{tuned.asked}, base {base.exact}/{base.asked}")
    assert tuned.rate >= 0.9, tuned.misses[:5]
    assert base.rate < 0.1

    # The merged folder is a plain transformers model with the adapter folded in.
    inputs = engine.prepare(_first_question(samples))
    base_model = AutoModelForImageTextToText.from_pretrained(spec.model).eval()
    with_adapter = PeftModel.from_pretrained(base_model, str(final.path)).eval()
    merged = AutoModelForImageTextToText.from_pretrained(str(job.files.merged)).eval()
    with torch.no_grad():
        adapter_logits = with_adapter(**inputs).logits
        merged_logits = merged(**inputs).logits
    assert torch.allclose(adapter_logits, merged_logits, atol=1e-3)


def _first_question(samples):
    from backend.training.check import questions

    _, turns, _ = questions(samples)[0]
    return turns


# ---- faults ------------------------------------------------------------------------------------


def test_sigkill_interrupts_and_resume_continues_from_the_checkpoint(demo_workdir, store, workers) -> None:
    job = store.submit(quick(demo_workdir, epochs=6))
    workers.start()
    wait_for("a first checkpoint", lambda: ready_checkpoints(store.get(job.id).files), job=job)
    pid = store.get(job.id).pid
    os.kill(pid, signal.SIGKILL)
    job = wait_for("the job to stop", lambda: finished(store, job.id), job=job)
    assert job.state == "interrupted" and "killed (SIGKILL)" in job.error
    saved = ready_checkpoints(job.files)[-1][0]
    assert f"Resume continues from step {saved}" in job.error
    total = read_metrics(job.files.metrics)[-1]["total_steps"]
    assert saved < total

    store.resume(job.id)
    job = wait_for("the resumed job to finish", lambda: finished(store, job.id), job=job)
    assert job.state == "succeeded" and job.attempts == 2
    # A save cut short by the kill (a hidden .partial folder) is cleared by the next run, which
    # picks up at the step after its checkpoint.
    assert not list(job.files.checkpoints.glob(".*"))
    second_run = job.files.log.read_text().split("===== attempt 2")[1]
    assert f"resumed from checkpoint step-{saved:06d}" in second_run
    first_step = int(re.search(r"step (\d+)/", second_run).group(1))
    assert first_step == saved + 1
    assert steps_logged(job) == list(range(1, total + 1))  # no gap, no step twice


def test_cancel_stops_the_process_group_and_keeps_a_checkpoint(demo_workdir, store, workers) -> None:
    # No checkpoint unless asked; data workers, which share the process group, must not die of it.
    job = store.submit(quick(demo_workdir, epochs=6, save_every=1000, data_workers=2))
    workers.start()
    wait_for("training to begin", lambda: steps_logged(store.get(job.id)), job=job)
    store.cancel(job.id)
    job = wait_for("the job to stop", lambda: finished(store, job.id), job=job)
    assert job.state == "cancelled", f"{job.error}\n{store.log_tail(job.id)}"
    [(step, folder)] = ready_checkpoints(job.files)  # saved on the way out, at the step it stopped
    assert step == steps_logged(job)[-1] < read_metrics(job.files.metrics)[-1]["total_steps"]
    assert f"Resume continues from step {step}" in job.error
    assert [c.path for c in store.checkpoints(job.id)] == [folder]
    assert not process_alive(job.pid, job.pid_start)


def test_two_jobs_run_one_after_the_other_and_a_second_worker_never_doubles_them(demo_workdir, store,
                                                                                  workers) -> None:
    first = workers.start("worker-1.log")
    wait_for("the first worker", lambda: "serving" in (store.workdir / "worker-1.log").read_text())
    workers.start("worker-2.log")
    wait_for("the second worker to wait",
             lambda: "waiting to take over" in (store.workdir / "worker-2.log").read_text())
    jobs = [store.submit(quick(demo_workdir, epochs=2, name=f"job {i}")) for i in range(2)]
    done = [wait_for("both jobs", lambda j=j: finished(store, j.id), job=j) for j in jobs]
    assert [j.state for j in done] == ["succeeded", "succeeded"]
    assert [j.attempts for j in done] == [1, 1] and done[0].worker == done[1].worker
    assert done[1].started >= done[0].finished  # one CPU: one after the other
    assert "started job" not in (store.workdir / "worker-2.log").read_text()

    stop(first)  # the waiting worker takes over
    wait_for("the second worker to take over", lambda: "serving" in (store.workdir / "worker-2.log").read_text())
    third = store.submit(quick(demo_workdir, epochs=1))
    assert wait_for("the third job", lambda: finished(store, third.id), job=third).state == "succeeded"


def test_a_killed_app_leaves_training_running_and_the_next_worker_adopts_it(demo_workdir, store, workers) -> None:
    job = store.submit(quick(demo_workdir, epochs=8))
    first = workers.start("worker-1.log")
    wait_for("training to begin", lambda: steps_logged(store.get(job.id)), job=job)
    first.kill()  # as if the app (and its worker) were killed
    first.wait()
    running = store.get(job.id)
    assert running.state == "running" and process_alive(running.pid, running.pid_start)
    workers.start("worker-2.log")
    job = wait_for("the adopted job to finish", lambda: finished(store, job.id), job=job)
    assert "adopted running job" in (store.workdir / "worker-2.log").read_text()
    assert job.state == "succeeded" and job.attempts == 1 and job.pid == running.pid


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_a_full_disk_fails_the_job_cleanly_without_a_half_checkpoint(demo_workdir, store, workers) -> None:
    """The job folder sits on a real 16 MB tmpfs that is filled while the job trains, so a
    checkpoint save hits ENOSPC. Without root (no mount), the same atomic-save path is checked by
    making the checkpoint folder unwritable instead."""
    mounted = _mount_tmpfs(store.jobs_dir, "16m")
    if not mounted and os.geteuid() == 0:
        pytest.skip("cannot mount a tmpfs here, and root ignores file permissions: no honest way to fill a disk")
    job = None
    try:
        job = store.submit(quick(demo_workdir, epochs=6))
        workers.start()
        wait_for("a first checkpoint", lambda: ready_checkpoints(store.get(job.id).files), job=job)
        if mounted:
            free = shutil.disk_usage(store.jobs_dir).free
            with open(store.jobs_dir / "filler", "wb") as filler:  # leave room for log lines, not a checkpoint
                filler.write(b"\0" * max(0, free - 64 * 1024))
        else:
            job.files.checkpoints.chmod(0o555)
        job = wait_for("the job to fail", lambda: finished(store, job.id), job=job)
        assert job.state == "failed"
        if mounted:
            assert "is full: checkpoint step-" in job.error and "could not be saved" in job.error
        # Every folder offered is complete; nothing half-written is left, hidden or not.
        names = [p.name for p in job.files.checkpoints.iterdir()]
        assert names and all(CHECKPOINT_RE.match(n) for n in names)
        assert len(ready_checkpoints(job.files)) == len(names)
    finally:
        workers.close()
        if mounted:
            subprocess.run(["umount", "-l", str(store.jobs_dir)], check=False)
        elif job is not None and job.files.checkpoints.exists():
            job.files.checkpoints.chmod(0o755)


def test_data_parallel_training_on_two_cpu_processes(demo_workdir: Path, tmp_path: Path) -> None:
    """The torchrun path the worker uses for several GPUs, with gloo standing in for NCCL."""
    spec = quick(demo_workdir, epochs=2, save_every=3, output_dir=str(tmp_path / "ddp"))
    Path(spec.output_dir).mkdir()
    spec.save(Path(spec.output_dir) / "spec.json")
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "backend.training.lora", str(Path(spec.output_dir) / "spec.json")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = (Path(spec.output_dir) / "train.log").read_text()
    assert "2 processes" in log
    records = [r for r in read_metrics(Path(spec.output_dir) / "metrics.jsonl") if "loss" in r]
    # 72 samples split over 2 processes, 8 each per step: 5 steps an epoch.
    assert [r["step"] for r in records] == list(range(1, 11)) and records[-1]["total_steps"] == 10
    assert (Path(spec.output_dir) / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((Path(spec.output_dir) / "result.json").read_text())["status"] == "succeeded"
    # Each process keeps its 36 samples in both epochs, so it prepares them once, and each photo among
    # them (asked in Chinese and in English) goes through the vision tower once (rank 0's log).
    from backend.training.demo_data import demo_records
    from backend.training.processes import Dist
    from backend.training.schedule import epoch_order

    records = demo_records()
    photos = {records[i]["image"] for i in epoch_order(72, spec.seed, 0, Dist(rank=0, world=2),
                                                        [r["image"] for r in records])}
    assert len(photos) == 18  # each photo's two questions on one rank: half the photos each
    assert ("samples prepared 36 times, reused from the cache 36 times; the prepared samples showed 36 "
            f"pictures, {len(photos)} of them went through the vision tower") in log, log[-3000:]


def test_a_stop_asked_of_one_rank_stops_both_at_the_same_step_with_a_checkpoint(demo_workdir: Path,
                                                                                 tmp_path: Path) -> None:
    """Each rank's steps are read one step late (step_totals.py), and a stop request travels in the
    summed totals: SIGTERM to one rank alone (not the group, as a cancel sends it) still stops both
    at one step, saved and resumable."""
    from backend.training.job_folder import EXIT_STOPPED, JobFiles

    spec = quick(demo_workdir, epochs=6, save_every=0, output_dir=str(tmp_path / "ddp"))
    Path(spec.output_dir).mkdir()
    spec.save(Path(spec.output_dir) / "spec.json")
    env = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    files = JobFiles(Path(spec.output_dir))
    with (tmp_path / "torchrun.log").open("w") as out:
        run = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                "-m", "backend.training.lora", str(files.root / "spec.json")],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for("a first step", lambda: files.metrics.exists() and '"loss"' in files.metrics.read_text())
            ranks = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True).stdout.split()
            assert len(ranks) == 2
            os.kill(int(max(ranks, key=int)), signal.SIGTERM)
            code = run.wait(timeout=240)
        finally:
            if run.poll() is None:  # the ranks too, not torchrun alone
                os.killpg(run.pid, signal.SIGKILL)
    torchrun = (tmp_path / "torchrun.log").read_text(errors="replace")[-3000:]
    log = files.log.read_text()
    stopped = re.search(r"stopped at step (\d+) of 30", log)
    assert stopped and code != 0, torchrun + log[-3000:]
    step = int(stopped.group(1))
    assert [s for s, _ in ready_checkpoints(files)] == [step]
    assert EXIT_STOPPED == 75 and "exitcode  : 75" in torchrun  # both ranks stopped, not crashed
    records = [r for r in read_metrics(files.metrics) if "loss" in r]
    assert records[-1]["step"] == step


def test_each_rank_keeps_its_share_of_the_samples_in_every_epoch() -> None:
    from backend.training.processes import Dist
    from backend.training.schedule import epoch_order

    one = [epoch_order(10, seed=7, epoch=e, dist=Dist()) for e in range(3)]
    assert all(sorted(order) == list(range(10)) for order in one) and one[0] != one[1]
    ranks = [[epoch_order(11, seed=7, epoch=e, dist=Dist(rank=r, world=2)) for e in range(3)] for r in range(2)]
    for epoch in range(3):
        assert len(ranks[0][epoch]) == len(ranks[1][epoch]) == 6  # 11 samples, one seen twice to even them
        assert set(ranks[0][epoch]) | set(ranks[1][epoch]) == set(range(11))
    for orders in ranks:
        assert all(set(order) == set(orders[0]) for order in orders)  # the same share ...
        assert orders[0] != orders[1]  # ... in a new order each epoch


def test_questions_about_one_photo_stay_on_one_rank() -> None:
    """Grouped by the photos they show, samples go to ranks whole groups at a time; every sample is
    still covered each epoch, ranks get equal counts, and a rank's padding repeats its own samples."""
    from backend.training.processes import Dist
    from backend.training.schedule import epoch_order

    groups = ["a", "a", "a", "b", "c", "c", "d", 7, 8, "e", "e", "a"]  # 7 and 8: samples without a photo
    for world in (2, 3):
        for epoch in range(3):
            shares = [epoch_order(len(groups), seed=3, epoch=epoch, dist=Dist(rank=r, world=world), groups=groups)
                      for r in range(world)]
            assert set().union(*map(set, shares)) == set(range(len(groups)))
            assert len({len(share) for share in shares}) == 1
            owner = {}
            for rank, share in enumerate(shares):
                for index in share:
                    assert owner.setdefault(groups[index], rank) == rank, f"group {groups[index]} on two ranks"
    again = epoch_order(len(groups), seed=3, epoch=1, dist=Dist(rank=1, world=2), groups=groups)
    assert again == epoch_order(len(groups), seed=3, epoch=1, dist=Dist(rank=1, world=2), groups=groups)


def test_steps_of_several_ranks_hold_about_the_same_tokens_on_each() -> None:
    """Ranks wait for the slowest at each step's gradient sum: with lengths, every step's share of
    tokens is about the same on both ranks, while each epoch still covers every sample once and which
    samples meet in a step changes from epoch to epoch."""
    import random

    from backend.training.processes import Dist
    from backend.training.schedule import epoch_order

    rng = random.Random(0)
    lengths = [rng.randrange(400, 1100) for _ in range(256)]
    groups = [f"photo-{i}" for i in range(256)]

    def worst_step_over_mean(given_lengths) -> float:
        worst = []
        for epoch in range(3):
            shares = [epoch_order(256, 5, epoch, Dist(rank=r, world=2), groups, given_lengths, 16) for r in range(2)]
            assert sorted(shares[0] + shares[1]) == list(range(256))
            for start in range(0, 128, 16):
                tokens = [sum(lengths[i] for i in share[start : start + 16]) for share in shares]
                worst.append(max(tokens) / (sum(tokens) / 2))
        return max(worst)

    assert worst_step_over_mean(None) > 1.05  # random steps: a rank waits >5% of a step somewhere
    assert worst_step_over_mean(lengths) < 1.02
    steps = [{frozenset(order[k : k + 16]) for k in range(0, 128, 16)}
             for order in (epoch_order(256, 5, e, Dist(rank=0, world=2), groups, lengths, 16) for e in (0, 1))]
    assert not steps[0] & steps[1]  # no step of epoch 0 comes back whole in epoch 1
    assert epoch_order(256, 5, 1, Dist(rank=1, world=2), groups, lengths, 16) == \
        epoch_order(256, 5, 1, Dist(rank=1, world=2), groups, lengths, 16)


def test_estimated_tokens_reads_picture_sizes_without_decoding(tmp_path: Path) -> None:
    from PIL import Image

    from backend.training.encoding import estimated_tokens
    from backend.training.samples import Sample

    Image.new("RGB", (640, 480)).save(tmp_path / "dish.jpg")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x" * 30}]},
                {"role": "assistant", "content": [{"type": "text", "text": "y" * 30}]}]
    sample = Sample("a", messages, (tmp_path / "dish.jpg",))
    assert estimated_tokens(sample, max_pixels=1024 * 768) == 640 * 480 // 784 + 20
    assert estimated_tokens(sample, max_pixels=28 * 28 * 10) == 10 + 20  # capped as the processor caps it
    gone = Sample("b", messages, (tmp_path / "missing.jpg",))
    assert estimated_tokens(gone, max_pixels=1024 * 768) == 20


def test_a_data_file_without_usable_samples_fails_before_the_model_loads(demo_workdir: Path, tmp_path: Path) -> None:
    """The data is read (and its first pictures handed to the loader) before the model loads, so a
    bad file is reported at once, not after a large model has been read from disk."""
    data = tmp_path / "broken.json"
    data.write_text(json.dumps([{"id": "a", "image": "no-such-picture.jpg",
                                 "conversations": [{"from": "human", "value": "<image>\nWhat dish?"}]}]))
    spec = quick(demo_workdir, data_file=str(data), output_dir=str(tmp_path / "job"))
    Path(spec.output_dir).mkdir()
    spec.save(Path(spec.output_dir) / "spec.json")
    run = subprocess.run([sys.executable, "-m", "backend.training.lora", str(Path(spec.output_dir) / "spec.json")],
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((Path(spec.output_dir) / "result.json").read_text())
    assert result["status"] == "failed" and "holds no usable sample (1 skipped)" in result["error"], result
    assert result["problem"]["key"] == "no_usable_sample" and result["problem"]["values"]["skipped"] == 1
    log = (Path(spec.output_dir) / "train.log").read_text()
    assert "skipped:" in log and "trainable parameters" not in log, log[-2000:]


def test_train_raising_in_its_own_process_with_loader_workers_lets_the_process_exit(demo_workdir, tmp_path):
    """train() called in-process (as the benchmarks do) that raises after its loader's workers started:
    the workers ignore SIGTERM (quiet_data_worker), which multiprocessing's exit handler sends before it
    waits for them; processes.py shuts the loader down first, so the process ends with the error."""
    bad = tmp_path / "damaged-set"
    bad.mkdir()
    (bad / "split.json").write_text("{not json", encoding="utf-8")
    program = ("import sys; from pathlib import Path\n"
               "from backend.training.demo_data import demo_spec\n"
               "from backend.training.job_folder import JobFiles\n"
               "from backend.training.lora import train\n"
               "from backend.training.processes import StopFlag\n"
               f"spec = demo_spec(Path({str(demo_workdir)!r}), output_dir={str(tmp_path / 'job')!r}, "
               f"data_workers=2, score_set={str(bad)!r})\n"
               "files = JobFiles(Path(spec.output_dir)); files.root.mkdir(parents=True)\n"
               "train(spec, files, StopFlag())\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 1
    assert "The evaluation set" in done.stderr and "cannot be read" in done.stderr
    assert "killed by signal" not in done.stderr
