"""The model card (README.md) of an exported adapter: the base it adapts, the data it learned and how
that data was split, the settings, how long it trained, how it scored, and the terms its training
data comes with. Everything is read from the job folder (spec.json, metrics.jsonl, the checkpoint's
metrics and kept scores) and the training set's split.json, so a card can be made for any job, any
time after it ran. Names from people and disks go in as text (backend/markdown_text.as_text)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from backend.bundled import EXAMPLES_DIR
from backend.data.schema import SOURCE_FOODIEQA, SOURCE_OWN, SOURCE_SAMPLE
from backend.data.split import MANIFEST
from backend.data.terms import FOODIEQA_TERMS, OWN_DATA_TERMS, SAMPLE_TERMS
from backend.markdown_text import as_text
from backend.training.checkpoint_scores import SCORES_FILE
from backend.training.demo_data import demo_data_file
from backend.training.job_folder import JobFiles, clock, read_json, read_metrics
from backend.training.spec import JobSpec

SOURCE_WORDS = {SOURCE_FOODIEQA: "FoodieQA", SOURCE_SAMPLE: "Foodie Studio's bundled sample", SOURCE_OWN: "own data"}
TERMS = {SOURCE_FOODIEQA: FOODIEQA_TERMS, SOURCE_SAMPLE: SAMPLE_TERMS, SOURCE_OWN: OWN_DATA_TERMS}
SHOWN_DISHES = 60  # held-out dish ids listed on the card; more are counted


@dataclass
class TrainingData:
    lines: list[str]  # Markdown, values already escaped
    sources: set[str] = field(default_factory=set)


def model_card(files: JobFiles, spec: JobSpec, checkpoint: Path, step: int | None, workdir: Path,
               quantized: bool) -> str:
    """The card of the adapter in `checkpoint` (`step` None: the job's final adapter)."""
    kept = read_json(checkpoint / ("training.json" if step is None else "metrics.json")) or {}
    at_step = int(kept.get("step") or step or 0)
    records = read_metrics(files.metrics)
    total = next((r["total_steps"] for r in reversed(records) if "total_steps" in r), kept.get("total_steps"))
    adapter_config = read_json(checkpoint / "adapter_config.json") or {}
    data = training_data(spec, workdir)
    name = spec.name or files.root.name
    which = (f"the final adapter (step {at_step} of {total})" if step is None else f"checkpoint {checkpoint.name} "
             f"(step {at_step} of {total})")
    hub_id = spec.model.count("/") == 1 and not spec.model.startswith((".", "/", "~"))
    lines = ["---", "library_name: peft", *([f"base_model: {spec.model}"] if hub_id else []),
             "tags: [lora, vision-language-model, foodie-studio]", "---", "",
             f"# {as_text(name)}: a LoRA adapter for {as_text(Path(spec.model).name or spec.model)}", "",
             f"Made with Foodie Studio by job `{files.root.name}`: {which}, exported {time.strftime('%Y-%m-%d')}.", "",
             "## Base model", "", f"- `{as_text(spec.model, 'code')}`"]
    if (Path(spec.model) / "foodie_studio.json").is_file():
        lines.append("- Foodie Studio's demo model: a tiny Qwen2-VL with random weights, built locally. It knows "
                     "only what this adapter taught it.")
    if quantized:
        lines.append("- Trained as **QLoRA**: the base was loaded in 4 bits (NF4) during training. A merged model "
                     "made from this adapter is merged in bf16 into that base *dequantized* (the weights the "
                     "adapter learned against), so it differs slightly from the original bf16 base.")
    lines += ["", "## Training data", "", *data.lines, "", "## Settings", "", "| setting | value |", "|---|---|",
              *settings_rows(spec, adapter_config), "", "## Training", ""]
    lines += training_lines(records, at_step, kept)
    lines += ["", "## Scores", "", *score_lines(records, checkpoint, at_step, kept, spec), "", "## Data terms", ""]
    for source in sorted(data.sources) or [SOURCE_OWN]:
        lines += [TERMS.get(source, OWN_DATA_TERMS), ""]
    if SOURCE_FOODIEQA in data.sources:
        lines += ["This adapter learned from FoodieQA: share and use it under FoodieQA's terms above "
                  "(non-commercial, no derivatives shared, research and evaluation).", ""]
    lines += ["## Use", "", "```python", "from peft import PeftModel",
              "from transformers import AutoModelForImageTextToText, AutoProcessor", "",
              f"base = AutoModelForImageTextToText.from_pretrained({json.dumps(spec.model)}, dtype=\"bfloat16\")",
              f"processor = AutoProcessor.from_pretrained({json.dumps(spec.model)})",
              "model = PeftModel.from_pretrained(base, \"path/to/this/folder\")", "```", ""]
    return "\n".join(lines)


def training_data(spec: JobSpec, workdir: Path) -> TrainingData:
    """What the job trained on, in lines for the card, and where the data came from (its sources)."""
    data_file = Path(spec.data_file)
    if spec.notes:  # a teaching job: taste notes, maybe with a saved set mixed in
        data = TrainingData([f"- Taste notes: {len(spec.notes)} answers corrected in Foodie Studio's Chat, on the "
                             "person's own photos."], {SOURCE_OWN})
        if spec.replay_set:
            replay = saved_set(Path(workdir) / "datasets" / spec.replay_set)
            data.lines += [f"- Mixed in: {spec.replay_samples} training samples of the saved set "
                           f"**{as_text(spec.replay_set)}**:", *("  " + line for line in replay.lines)]
            data.sources |= replay.sources
        return data
    if (data_file.parent / MANIFEST).is_file():
        return saved_set(data_file.parent)
    demo = demo_data_file(workdir)
    bundled = data_file.name == demo.name and spec.images_dir.resolve() == EXAMPLES_DIR  # a job run by hand
    if data_file.resolve() == demo.resolve() or bundled:
        return TrainingData(["- Foodie Studio's bundled dishes: 12 dishes, 3 pictures each, asked about in Chinese "
                             "and English (72 samples).", "- Split: none; every dish was trained on."], {SOURCE_SAMPLE})
    return TrainingData([f"- Data file `{as_text(data_file, 'code')}` (its sources were not recorded)."], {SOURCE_OWN})


def saved_set(folder: Path) -> TrainingData:
    """A training set saved from the Dataset tab: its sources, tasks and split by dish (split.json)."""
    manifest = read_json(folder / MANIFEST)
    if manifest is None:
        return TrainingData([f"- The saved set `{as_text(folder, 'code')}` (its split.json is gone)."], {SOURCE_OWN})
    train, held = manifest.get("train", {}), manifest.get("heldout", {})
    held_dishes = [str(d) for d in held.get("dish_ids", [])]
    shown = ", ".join(as_text(d) for d in held_dishes[:SHOWN_DISHES])
    more = len(held_dishes) - SHOWN_DISHES
    lines = [f"- Data set: **{as_text(folder.name)}**, saved from "
             f"{', '.join(SOURCE_WORDS.get(s, as_text(s)) for s in manifest.get('sources', []))} "
             f"({', '.join(manifest.get('tasks', []))} questions, asked in {manifest.get('lang', '?')}).",
             f"- Split by dish ({100 * manifest.get('heldout_ratio', 0):.0f}% of the dishes held out, seed "
             f"{manifest.get('seed')}): {train.get('samples', 0)} training samples of {len(train.get('dish_ids', []))} "
             f"dishes; {held.get('samples', 0)} held-out samples of {len(held_dishes)} dishes, never trained on.",
             f"- Held-out dishes: {shown or 'none'}{f' and {more} more' if more > 0 else ''}."]
    if manifest.get("terms_accepted"):
        lines.append("- FoodieQA's terms were accepted when this set was saved for training.")
    return TrainingData(lines, set(manifest.get("sources", [])))


def settings_rows(spec: JobSpec, adapter_config: dict) -> list[str]:
    targets = adapter_config.get("target_modules") or spec.target_modules
    targets = sorted(targets) if isinstance(targets, list) else [str(targets)]
    rows = [("LoRA rank r / alpha / dropout", f"{spec.lora_r} / {spec.lora_alpha} / {spec.lora_dropout}"),
            ("LoRA on", f"the language model's {', '.join(targets)}; vision tower and projector frozen"),
            ("learning rate", f"{spec.learning_rate:g}, {spec.lr_schedule}, warmup {spec.warmup_ratio:g}"),
            ("weight decay / gradient clipping", f"{spec.weight_decay:g} / {spec.max_grad_norm:g}"),
            ("epochs", str(spec.epochs)),
            ("batch", f"{spec.batch_size} × {spec.grad_accum} accumulation × {spec.gpus} GPU(s) = "
                      f"{spec.effective_batch} samples a step"),
            ("pictures", f"up to {spec.max_image_pixels} pixels; samples up to {spec.max_length} tokens"),
            ("device / precision", f"{spec.device}, {'bf16 on GPUs' if spec.bf16 else 'fp32'} (fp32 on a CPU)"),
            ("seed", str(spec.seed))]
    return [f"| {key} | {as_text(value)} |" for key, value in rows]


def training_lines(records: list[dict], at_step: int, kept: dict) -> list[str]:
    seconds = training_seconds(records, at_step)
    epoch = next((r["epoch"] for r in reversed(records) if "loss" in r and r["step"] == at_step), kept.get("epoch"))
    lines = [f"- Steps: {at_step}" + (f" (epoch {epoch:.2f})" if isinstance(epoch, (int, float)) else ""),
             f"- Training time: {clock(seconds)} of training steps" if seconds is not None else
             "- Training time: not recorded."]
    for key, label in (("loss", "Training loss"), ("eval_loss", "Held-out loss")):
        if isinstance(kept.get(key), (int, float)):
            lines.append(f"- {label} at this step: {kept[key]:.4f}")
    return lines


def training_seconds(records: list[dict], up_to_step: int) -> float | None:
    """Seconds of training to `up_to_step`, summed over every run of the job: each run (a resumed job
    runs again) logs its time from its own start."""
    total, last = 0.0, None
    for record in records:
        if "elapsed_s" not in record or record["step"] > up_to_step:
            continue
        if last is not None and record["elapsed_s"] < last:
            total += last
        last = record["elapsed_s"]
    return None if last is None else total + last


def score_lines(records: list[dict], checkpoint: Path, at_step: int, kept: dict, spec: JobSpec) -> list[str]:
    """This checkpoint's scores on multiple-choice questions: those the training program gave it (on
    the job's evaluation set), and those the Compare tab kept beside it."""
    from backend.evaluation.scoring import load_runs

    scored_step = int(kept.get("best_step") or at_step)
    rows = []
    for record in records:
        if "eval_accuracy" in record and record["step"] == scored_step:
            which = "trained on" if record.get("trained_on") else "held out"
            rows.append((f"{record.get('eval_set', '?')} ({which})", "while training", spec.score_lang,
                         record["eval_accuracy"], record.get("eval_questions", 0), record.get("eval_unparsed", 0)))
    for run in load_runs(checkpoint):
        rows.append((run.split, "Compare tab", run.lang, run.accuracy, len(run.questions), run.unparsed))
    if not rows and (checkpoint / SCORES_FILE).is_file():
        run = json.loads((checkpoint / SCORES_FILE).read_text(encoding="utf-8"))
        rows.append((run.get("split", "?"), "while training", run.get("lang", "?"), run.get("accuracy", 0.0),
                     len(run.get("questions", [])), run.get("unparsed", 0)))
    if not rows:
        return ["Not scored: the job named no evaluation set, and the Compare tab has not scored this checkpoint."]
    lines = ["| questions | scored | language | accuracy | of | unparsed |", "|---|---|---|---:|---:|---:|"]
    lines += [f"| {as_text(name)} | {when} | {lang} | {100 * accuracy:.1f}% | {count} | {unparsed} |"
              for name, when, lang, accuracy, count, unparsed in rows]
    if kept.get("best_step"):
        lines += ["", f"The job kept its best checkpoint: these weights are step {kept['best_step']}'s."]
    return lines
