"""A checkpoint taken out of Foodie Studio: a merged model folder, the adapter with a model card, a
zip of that adapter to download.

    python -m backend.training.export runs/jobs/<job-id>                        # its final adapter
    python -m backend.training.export runs/jobs/<job-id>/checkpoints/step-000040 --what merged

Everything goes to <work folder>/exports/<name>/ (the name defaults to "<job id>-<checkpoint>"):

    adapter/                 peft's format (adapter_config.json, adapter_model.safetensors) + README.md,
                             the model card (model_card.py)
    <name>-adapter.zip       that folder, zipped, to download from the Train tab
    merged/                  base + adapter folded into one transformers model in bf16, with the
                             processor, tokenizer and chat template: `lmdeploy serve api_server merged/`

The merge loads the base afresh from where the job found it (not the training process's patched
model) in bf16, adds each LoRA product B·A·scale to its weight (peft's merge_and_unload), and saves.
A base that trained in 4 bits (QLoRA) is merged into that base dequantized: see `load_base`.

Each part is written under a hidden name and renamed when whole (checkpoints.write_atomically), so
a full disk leaves no half-written folder; a name that leads outside exports/ is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from backend.problems import Problem, ProblemError
from backend.training.checkpoints import write_atomically
from backend.training.errors import TrainingError
from backend.training.job_folder import (
    ADAPTER_FILES,
    CHECKPOINT_RE,
    JobFiles,
    is_adapter_dir,
    is_model_dir,
    ready_checkpoints,
)
from backend.training.spec import JobSpec

log = logging.getLogger(__name__)

MERGED, ADAPTER, ZIP = "merged", "adapter", "zip"
KINDS = (MERGED, ADAPTER, ZIP)
EXPORTS = "exports"  # under the work folder
CARD = "README.md"
# QLoRA: the spec field that says a job's base was loaded in 4 bits ("nf4"; "" or absent: not). The
# only place this module learns of it, so a recipe that names it otherwise changes this line.
QUANTIZATION_FIELD = "quantization"
# Room for what a merged folder holds besides the weights (tokenizer, configs, chat template).
MERGED_EXTRA_BYTES = 32 * 2**20


class ExportError(TrainingError):
    """An export that cannot be done, with the sentence that says why."""


@dataclass(frozen=True)
class ExportSource:
    """One checkpoint of one job: what an export is made from."""

    files: JobFiles
    spec: JobSpec
    checkpoint: Path  # an adapter folder: the job's adapter/ or one of its checkpoints/step-NNNNNN
    step: int | None  # None for the final adapter (its step is in its training.json)
    workdir: Path  # the work folder the job belongs to (exports go under it)

    @property
    def label(self) -> str:
        return "final" if self.step is None else self.checkpoint.name

    @property
    def quantized(self) -> bool:
        return str(getattr(self.spec, QUANTIZATION_FIELD, "") or "none").lower() != "none"


@dataclass(frozen=True)
class Exported:
    folder: Path
    adapter: Path | None
    zip: Path | None
    merged: Path | None
    seconds: float

    def to_json(self) -> dict:
        return {"folder": str(self.folder), "adapter": _str(self.adapter), "zip": _str(self.zip),
                "merged": _str(self.merged), "seconds": round(self.seconds, 2)}


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def saved_adapter(files: JobFiles) -> bool:
    """Whether the job wrote any adapter (its final one, or a checkpoint's)."""
    return is_adapter_dir(files.adapter) or any(is_adapter_dir(folder) for _, folder in ready_checkpoints(files))


def export_source(path: str | Path, workdir: str | Path | None = None) -> ExportSource:
    """A job folder (its final adapter, else its newest checkpoint) or a checkpoint folder of one. The
    work folder defaults to the one holding the job (<work folder>/jobs/<job id>)."""
    path = Path(path).resolve()
    if CHECKPOINT_RE.match(path.name) and path.parent.name == "checkpoints":
        files, checkpoint, step = JobFiles(path.parent.parent), path, int(CHECKPOINT_RE.match(path.name).group(1))
    elif path.name == "adapter":
        files, checkpoint, step = JobFiles(path.parent), path, None
    else:
        files = JobFiles(path)
        saved = ready_checkpoints(files)
        checkpoint, step = (files.adapter, None) if is_adapter_dir(files.adapter) else (
            (saved[-1][1], saved[-1][0]) if saved else (files.adapter, None))
    if is_model_dir(checkpoint) or (not saved_adapter(files) and is_model_dir(files.model)):
        raise ExportError("export_whole_model", "{path} is a full fine-tune's whole model: it loads with transformers "
                          "and LMDeploy as it is, with no adapter to merge or zip.", path=str(checkpoint
                          if is_model_dir(checkpoint) else files.model))
    if not is_adapter_dir(checkpoint):
        raise ExportError("export_no_checkpoint", "{path} holds no finished adapter or checkpoint to export (a job "
                          "saves one every N steps and at the end).", path=str(path))
    try:
        spec = JobSpec.load(files.spec)
    except (OSError, ValueError) as err:
        raise ExportError("export_no_spec", "The job's settings ({path}) cannot be read: {why}", path=str(files.spec),
                          why=str(err).splitlines()[0][:200]) from None
    return ExportSource(files, spec, checkpoint, step, Path(workdir).resolve() if workdir else files.root.parent.parent)


def destination(workdir: Path, name: str, default: str) -> Path:
    """<work folder>/exports/<name>; ExportError when `name` leads anywhere else (an absolute path,
    "..", a link out) or holds control characters."""
    root = (Path(workdir) / EXPORTS).resolve()
    name = name.strip() or default
    target = (root / name).resolve()
    if any(unicodedata.category(c)[0] == "C" for c in name) or not target.is_relative_to(root) or target == root:
        raise ExportError("export_outside", "Exports are written inside the work folder, under {root}; {name!r} "
                          "would lead elsewhere. Give a plain folder name such as my-dishes-lora.",
                          root=str(root), name=name)
    return target


def export_checkpoint(jobs, workdir: Path, key: str, kinds: list[str] | tuple[str, ...], name: str = "") -> Exported:
    """Export the checkpoint the model catalog calls `key` ("<job id>:final", "<job id>:<step>")."""
    from backend.catalog import find_choice, model_choices

    choice = find_choice(model_choices(jobs), key)
    if choice.adapter_dir is None:
        raise ExportError("export_base", "The base model is no checkpoint of a job; pick one of a job's checkpoints "
                          "to export.")
    return export(export_source(choice.adapter_dir, workdir), kinds, name)


def export(source: ExportSource, kinds: list[str] | tuple[str, ...], name: str = "") -> Exported:
    """Write the asked parts (MERGED, ADAPTER, ZIP; a zip comes with the adapter folder it zips) to
    the export folder. A part that fails leaves no trace of itself; a folder this made stays only if
    a part in it is whole."""
    kinds = tuple(kind for kind in KINDS if kind in set(kinds))
    if not kinds:
        raise ExportError("export_nothing", "Choose what to export: the merged model, the adapter with its model "
                          "card, or its zip.")
    started = time.monotonic()
    folder = destination(source.workdir, name, f"{source.files.root.name}-{source.label}")
    made = [p for p in (folder, *folder.parents) if not p.exists() and p.is_relative_to(source.workdir)]
    folder.mkdir(parents=True, exist_ok=True)
    adapter = zipped = merged = None
    try:
        if ADAPTER in kinds or ZIP in kinds:
            adapter = write_adapter(source, folder / ADAPTER)
        if ZIP in kinds:
            zipped = write_zip(adapter, folder / f"{folder.name}-adapter.zip", f"{folder.name}-adapter")
        if MERGED in kinds:
            merged = write_merged(source, folder / MERGED)
    except BaseException:
        for made_folder in made:  # deepest first; only folders left empty by the failure
            if made_folder.is_dir() and not any(made_folder.iterdir()):
                made_folder.rmdir()
        raise
    done = Exported(folder, adapter, zipped, merged, time.monotonic() - started)
    log.info("exported %s of %s to %s in %.1f s", ", ".join(kinds), source.files.root.name, folder, done.seconds)
    return done


def _write(target: Path, write, needed: int, what: Problem) -> None:
    write_atomically(target, write, needed, target.parent,
                     Problem("space_export", "Exporting {what}", what=what),
                     Problem("disk_full_export", "The disk holding {folder} filled up while {what} was written; "
                             "nothing half-written was kept. Free some space, then export again.",
                             folder=str(target.parent), what=what))


def write_adapter(source: ExportSource, target: Path) -> Path:
    """The checkpoint's adapter files as peft saved them, and the model card."""
    from backend.training.model_card import model_card

    card = model_card(source.files, source.spec, source.checkpoint, source.step, source.workdir, source.quantized)

    def write(partial: Path) -> None:
        partial.mkdir()
        for name in ADAPTER_FILES:
            shutil.copyfile(source.checkpoint / name, partial / name)
        (partial / CARD).write_text(card, encoding="utf-8")

    needed = sum((source.checkpoint / n).stat().st_size for n in ADAPTER_FILES) + 2**20
    _write(target, write, needed, Problem("export_what_adapter", "the adapter"))
    return target


def write_zip(adapter: Path, target: Path, top: str) -> Path:
    """`adapter` zipped under one folder `top`. The weights are stored as they are: random-looking
    floats do not deflate, and deflating hundreds of MB would cost seconds for nothing."""

    def write(partial: Path) -> None:
        with zipfile.ZipFile(partial, "w") as archive:
            for path in sorted(adapter.iterdir()):
                stored = path.suffix == ".safetensors"
                archive.write(path, f"{top}/{path.name}",
                              compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)

    needed = sum(p.stat().st_size for p in adapter.iterdir()) + 2**20
    _write(target, write, needed, Problem("export_what_zip", "the adapter's zip"))
    return target


def write_merged(source: ExportSource, target: Path) -> Path:
    """Base + adapter as one bf16 transformers model folder with the base's processor."""
    import torch

    from backend.models.loading import load_processor, resolve

    base = resolve(source.spec.model)
    model = merged_model(base.location, source.checkpoint, source.quantized)
    processor = load_processor(base)
    needed = sum(p.numel() for p in model.parameters()) * torch.bfloat16.itemsize + MERGED_EXTRA_BYTES

    def write(partial: Path) -> None:
        model.save_pretrained(partial)
        processor.save_pretrained(partial)
        name_the_dtype_as_lmdeploy_reads_it(partial / "config.json")

    _write(target, write, needed, Problem("export_what_merged", "the merged model"))
    return target


def merged_model(base_location: str, adapter: Path, quantized: bool = False):
    """The base with the adapter's products added into its weights, in bf16, ready to save."""
    import torch
    from peft import PeftModel

    model = load_base(base_location, quantized)
    # peft keeps the adapter's weights in fp32, so each weight gets W + B·A·scale worked out in fp32
    # and is rounded to bf16 once.
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.config.use_cache = True  # generation's default again (training turns it off)
    return merged.to(torch.bfloat16).eval()


def load_base(location: str, quantized: bool):
    """The base model in bf16, on the CPU (a GPU may be busy serving or training).

    QLoRA: the adapter learned against the 4-bit (NF4) weights, not the original bf16 ones. Merging
    into 4-bit layers would quantize the sum again, and merging into the original weights would give
    a model that never trained; so the base is loaded in 4 bits as the job loaded it, dequantized to
    bf16, and the adapter merged there (the model card says so)."""
    import torch
    from transformers import AutoModelForImageTextToText

    if not quantized:
        try:
            return AutoModelForImageTextToText.from_pretrained(location, dtype=torch.bfloat16)
        except (OSError, ValueError, RuntimeError) as err:
            raise ExportError("export_base_unloadable", "The base model {model} could not be loaded to merge the "
                              "adapter into: {detail}", model=location, detail=str(err).splitlines()[0][:300]) from None
    try:
        import bitsandbytes  # noqa: F401  (transformers' 4-bit loading needs it)
    except ImportError:
        raise ExportError("export_needs_bitsandbytes", "This checkpoint was trained on a base loaded in 4 bits "
                          "(QLoRA); merging it dequantizes that base, which needs the bitsandbytes package. Install "
                          "it (pip install bitsandbytes), or export the adapter alone.") from None
    from transformers import BitsAndBytesConfig

    four_bit = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForImageTextToText.from_pretrained(location, quantization_config=four_bit, dtype=torch.bfloat16,
                                                        device_map={"": device})
    return model.dequantize().to("cpu", torch.bfloat16)


def name_the_dtype_as_lmdeploy_reads_it(config_path: Path) -> None:
    """transformers 5 writes a config's dtype as `dtype`; LMDeploy 0.18 reads only the older
    `torch_dtype` and without it runs a bf16 model in fp16 (docs/serving.md). Both keys, then."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for part in (config, *(v for v in config.values() if isinstance(v, dict))):
        if "dtype" in part:
            part["torch_dtype"] = part["dtype"]
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a job folder (runs/jobs/<id>) or one of its checkpoint folders")
    parser.add_argument("--what", default="adapter,zip,merged", help="comma-separated: merged, adapter, zip")
    parser.add_argument("--name", default="", help="the folder under <work folder>/exports "
                        "(default <job>-<checkpoint>)")
    parser.add_argument("--workdir", default=None, help="the work folder (default: the one holding the job)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        done = export(export_source(args.path, args.workdir), [k.strip() for k in args.what.split(",")], args.name)
    except ProblemError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(done.to_json(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
