"""Exporting a checkpoint of a 2B model: the merged model folder written by Foodie Studio's export
against the plain recipe in the same run; and, with --lmdeploy, LMDeploy serving a merged folder
with the answers transformers gives on it.

    python3 bench/bench_export.py --workdir /tmp/export-bench              # GPU machine: the 2B shape
    python3 bench/bench_export.py --workdir /tmp/export-bench --lmdeploy   # + LMDeploy (installed)
    python3 bench/bench_export.py --dry-run --lmdeploy                     # CPU: the narrow shape, no server

Model: Qwen2-VL-2B-Instruct's shape with random weights (bench_training.build_2b_shape, bf16) and a
LoRA adapter of the 2b-gpu preset's size (r=128, alpha=256 on q/k/v/o/gate/up/down of the language
model) with random non-zero weights, in a job folder as the training program leaves one. Timed:
  - the plain recipe (baseline): the base in bf16, peft's PeftModel + merge_and_unload,
    save_pretrained of the model and the processor;
  - ours: backend/training/export.py's export(..., ["merged"]) as the Train tab runs it (the same
    merge, plus the free-space check, the hidden folder made durable and renamed, the LMDeploy
    dtype key), then the adapter with its model card and the zip, timed apart.
Both run on the CPU, as the app's export does, after an untimed round of each on the narrow shape
(first-use costs). Checked: every tensor of ours equals the baseline's.
Bar: ours ≤ 60 s for the merged 2B model on the GPU machine.

--lmdeploy: the demo model trained with the demo-cpu preset on the bundled dishes (on the CPU, in
this process), its merged folder exported, then every trained question asked greedily of that folder
through transformers (the app's engine, CPU) and through LMDeploy (`lmdeploy serve api_server
<merged>` via the app's LMDeployServer). Bar: the first question's answers are equal; all 72 are
counted. Without a GPU (--dry-run) the server part is skipped and says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_training import SHAPE_2B, SHAPE_DRY, build_2b_shape, make_photo_samples  # noqa: E402

BAR_S = 60.0


def job_with_random_adapter(workdir: Path, base: Path, name: str) -> Path:
    """jobs/<name>/ with spec.json and adapter/ as a finished job has them: the 2b-gpu preset's
    LoRA with random weights (B not zero, so merging changes every targeted weight)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from backend.training.model import language_model_targets
    from backend.training.spec import preset

    job = workdir / "jobs" / name
    if (job / "adapter" / "adapter_model.safetensors").is_file():
        return job
    data = make_photo_samples(workdir / "photos", count=8)
    spec = preset("2b-gpu", model=str(base), data_file=str(data), output_dir=str(job), name="export bench")
    job.mkdir(parents=True, exist_ok=True)
    spec.save(job / "spec.json")
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.bfloat16)
    config = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                        target_modules=language_model_targets(model, spec.target_modules), init_lora_weights=False)
    torch.manual_seed(0)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(job / "adapter")
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    (job / "adapter" / "training.json").write_text(json.dumps({"base_model": str(base), "step": 0, "total_steps": 0}))
    print(f"random adapter: {trainable / 1e6:.1f} M weights, r={spec.lora_r}", flush=True)
    return job


def plain_merge(base: Path, adapter: Path, out: Path) -> float:
    """The plain recipe: load, merge_and_unload, save_pretrained (model and processor). Seconds."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from backend.models.loading import load_processor, resolve

    started = time.perf_counter()
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.bfloat16)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    load_processor(resolve(str(base))).save_pretrained(out)
    return time.perf_counter() - started


def same_tensors(ours: Path, theirs: Path, base: Path) -> dict:
    """Every tensor of our merged folder against the baseline's (equal), and how many differ from
    the base (the merged ones)."""
    from safetensors import safe_open

    def tensors(folder: Path) -> dict[str, tuple[Path, str]]:
        found = {}
        for path in sorted(folder.glob("*.safetensors")):
            with safe_open(path, "pt") as weights:
                found.update({key: (path, key) for key in weights.keys()})  # noqa: SIM118 (not a dict)
        return found

    mine, plain, original = tensors(ours), tensors(theirs), tensors(base)
    equal = changed = 0
    for key, (path, name) in mine.items():
        with safe_open(path, "pt") as a, safe_open(plain[key][0], "pt") as b:
            tensor = a.get_tensor(name)
            equal += torch.equal(tensor, b.get_tensor(name))
        if key in original:
            with safe_open(original[key][0], "pt") as c:
                changed += not torch.equal(tensor, c.get_tensor(name))
    return {"tensors": len(mine), "equal_to_baseline": equal, "same_keys": mine.keys() == plain.keys(),
            "changed_from_base": changed}


def time_exports(workdir: Path, base: Path, job: Path) -> dict:
    from backend.disk import tree_size
    from backend.training.export import ADAPTER, MERGED, ZIP, export, export_source

    # First uses (imports, peft's and transformers' lazy set-up) paid on the narrow shape, by neither timed run
    warm_base = build_2b_shape(workdir / "base-warm-up", SHAPE_DRY)
    warm_job = job_with_random_adapter(workdir, warm_base, "warm-up")
    plain_merge(warm_base, warm_job / "adapter", workdir / "warm-up-merged")
    export(export_source(warm_job, workdir), [MERGED, ADAPTER, ZIP], name="warm-up")

    baseline_dir = workdir / "baseline-merged"
    shutil.rmtree(baseline_dir, ignore_errors=True)
    baseline_s = plain_merge(base, job / "adapter", baseline_dir)
    print(f"plain recipe: merged in {baseline_s:.1f} s", flush=True)
    source = export_source(job, workdir)
    merged = export(source, [MERGED], name="bench-merged")
    print(f"ours: merged in {merged.seconds:.1f} s", flush=True)
    shared = export(source, [ADAPTER, ZIP], name="bench-adapter")
    return {"baseline_merge_s": round(baseline_s, 2), "ours_merge_s": round(merged.seconds, 2),
            "ours_adapter_and_zip_s": round(shared.seconds, 2), "merged_gb": round(tree_size(merged.merged) / 1e9, 3),
            "zip_gb": round(shared.zip.stat().st_size / 1e9, 3),
            "weights": same_tensors(merged.merged, baseline_dir, base)}


def lmdeploy_check(workdir: Path, serve: bool) -> dict:
    """The demo model trained, its merged folder exported, then asked every trained question through
    transformers and (with `serve`) LMDeploy."""
    from backend.training.check import exact_answers, load_engine
    from backend.training.demo_data import demo_spec
    from backend.training.export import MERGED, export, export_source
    from backend.training.job_folder import EXIT_OK, JobFiles
    from backend.training.lora import train
    from backend.training.processes import StopFlag
    from backend.training.samples import read_samples

    spec = demo_spec(workdir, output_dir=str(workdir / "jobs" / "demo-for-lmdeploy"))
    files = JobFiles(Path(spec.output_dir))
    if not (files.adapter / "adapter_model.safetensors").is_file():
        files.root.mkdir(parents=True, exist_ok=True)
        spec.save(files.spec)
        started = time.perf_counter()
        if train(spec, files, StopFlag()) != EXIT_OK:
            raise SystemExit(f"the demo job failed: {(files.root / 'result.json').read_text()}")
        print(f"demo job trained in {time.perf_counter() - started:.1f} s", flush=True)
    merged = export(export_source(files.root, workdir), [MERGED], name="demo-merged").merged
    samples, _ = read_samples(Path(spec.data_file), spec.images_dir)
    reference = exact_answers(load_engine(str(merged)), samples)
    result = {"merged": str(merged), "transformers_exact": f"{reference.exact}/{reference.asked}"}
    if not serve:
        result["lmdeploy"] = "not run: LMDeploy needs a GPU"
        return result
    from backend.inference.lmdeploy_engine import LMDeployEngine
    from backend.inference.lmdeploy_server import LMDeployServer, ServerOptions

    server = LMDeployServer(ServerOptions(model=str(merged), workdir=workdir / "lmdeploy"))
    engine = None
    try:  # a server that does not start loses none of the figures measured before it
        started = time.perf_counter()
        server.start(timeout=600)
        result["lmdeploy_start_s"] = round(time.perf_counter() - started, 1)
        engine = LMDeployEngine(server, max_pixels=spec.max_image_pixels)
        served = exact_answers(engine, samples)
        ours = {sample: got for sample, _, got in served.misses}
        theirs = {sample: got for sample, _, got in reference.misses}
        first = samples[0].id
        differing = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        result.update(lmdeploy_exact=f"{served.exact}/{served.asked}",
                      first_question_equal=ours.get(first) == theirs.get(first), answers_differing=differing[:10])
    except Exception as err:  # keep what was measured; say where it stopped
        result["lmdeploy_error"] = f"{type(err).__name__}: {err}"[:500]
        result["lmdeploy_log"] = server.log_tail(30)
    finally:
        if engine is not None:
            engine.close()
        else:
            server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where models, jobs and exports go (default: a "
                        "temporary folder)")
    parser.add_argument("--dry-run", action="store_true", help="the narrow shape on the CPU: the same code path")
    parser.add_argument("--lmdeploy", action="store_true", help="also serve a merged demo model with LMDeploy")
    parser.add_argument("--out", type=Path, default=Path("export-bench.json"))
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="export-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    shape = "dry-run" if args.dry_run else "Qwen2-VL-2B"
    base = build_2b_shape(workdir / f"base-{shape}", SHAPE_DRY if args.dry_run else SHAPE_2B)
    job = job_with_random_adapter(workdir, base, f"bench-{shape}")
    results = {"machine": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "shape": shape, "setup_s": round(time.perf_counter() - started, 1),
               **time_exports(workdir, base, job)}
    if args.lmdeploy:
        results["lmdeploy"] = lmdeploy_check(workdir, serve=torch.cuda.is_available() and not args.dry_run)
    ok = results["weights"]["equal_to_baseline"] == results["weights"]["tensors"]
    results["bar"] = (f"ours {results['ours_merge_s']:.1f} s against ≤ {BAR_S:.0f} s: "
                      f"{'met' if results['ours_merge_s'] <= BAR_S else 'not met'}; tensors equal to the plain "
                      f"recipe's: {'yes' if ok else 'NO'}")
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
