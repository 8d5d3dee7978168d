"""Does LMDeploy serve a trained adapter as it was trained? Base and adapter from one engine, their
answers differing where the adapter was trained.

    python3 bench/check_lmdeploy_adapter.py --workdir /tmp/adapter-check   # a GPU machine with LMDeploy

Trains the demo model with the demo-cpu preset on the 72 bundled questions (the training program
through the app's worker, on the CPU), then asks every trained question, greedy, of the base model
and the tuned adapter served from one LMDeploy engine (our LMDeployServer and LMDeployEngine), and
counts the answers equal to the trained answer; transformers + peft answer the same questions with
the same adapter beside it, as the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_training import run_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/adapter-check"))
    parser.add_argument("--out", type=Path, default=Path("adapter-check.json"))
    args = parser.parse_args()
    from backend.inference.lmdeploy_engine import LMDeployEngine
    from backend.inference.lmdeploy_server import LMDeployServer, ServerOptions
    from backend.training.check import exact_answers, load_engine
    from backend.training.demo_data import demo_spec
    from backend.training.jobs import JobStore
    from backend.training.samples import read_samples
    from backend.training.worker import spawn, stop

    spec = demo_spec(args.workdir)
    store = JobStore(args.workdir)
    worker = spawn(args.workdir, gpus="none")
    try:
        job, wall = run_job(store, spec, timeout_s=300)
    finally:
        stop(worker)
    if job.state != "succeeded":
        raise SystemExit(f"training {job.state}: {job.error}\n{store.log_tail(job.id)}")
    adapter = Path(job.files.adapter)
    samples, _ = read_samples(Path(spec.data_file), spec.images_dir)
    results: dict = {"training_wall_s": wall}

    reference = load_engine(spec.model, {"tuned": adapter})
    for name, which in (("base", None), ("tuned", "tuned")):
        report = exact_answers(reference, samples, which)
        results[f"transformers_{name}_exact"] = f"{report.exact}/{report.asked}"

    server = LMDeployServer(ServerOptions(model=spec.model, workdir=args.workdir / "lmdeploy"))
    start = time.perf_counter()
    server.start(timeout=600)
    results["server_start_s"] = time.perf_counter() - start
    engine = LMDeployEngine(server, max_pixels=spec.max_image_pixels)
    try:
        base = exact_answers(engine, samples, None)
        engine.load_adapter("tuned", str(adapter))
        tuned = exact_answers(engine, samples, "tuned")
        again = exact_answers(engine, samples, None)
        results.update(lmdeploy_base_exact=f"{base.exact}/{base.asked}",
                       lmdeploy_tuned_exact=f"{tuned.exact}/{tuned.asked}",
                       lmdeploy_base_after_restart_exact=f"{again.exact}/{again.asked}",
                       lmdeploy_tuned_misses=tuned.misses[:5], lmdeploy_base_sample=base.misses[:2])
    except Exception as err:  # keep what was measured; say where it stopped
        results["lmdeploy_error"] = f"{type(err).__name__}: {err}"[:500]
        results["lmdeploy_log"] = server.log_tail(30)
    finally:
        engine.close()
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
