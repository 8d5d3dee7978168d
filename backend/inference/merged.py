"""A checkpoint merged into its base model, as a model folder of its own: how LMDeploy serves a
checkpoint that trained more than LoRA on the language model.

LMDeploy applies LoRA adapters on the language model's linear layers and nothing else: a trained
projector, LoRA on the vision tower or a whole trained decoder would be silently left out. Such a
checkpoint is merged here (peft's merge_and_unload: B·A·scale added into each adapted weight, the
modules trained whole put in place) and served by a server of its own (lmdeploy_engine.py).

Written once per checkpoint under the work folder, atomically (a hidden folder renamed into place),
and written again when the checkpoint's weights change.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "foodie_merged_from.json"
WEIGHT_FILES = (".safetensors", ".bin", ".pt")


def merged_folder(base: str, adapter: Path, out: Path) -> Path:
    """`out` holding base + the adapter in `adapter`, merged, in the base's dtype, with the base's
    tokenizer and processor files; kept as it is while it was made from this adapter's weights."""
    adapter = Path(adapter)
    made_from = {"adapter": str(adapter.resolve()),
                 "weights_mtime_ns": (adapter / "adapter_model.safetensors").stat().st_mtime_ns}
    try:
        if json.loads((out / MARKER).read_text(encoding="utf-8")) == made_from:
            return out
    except (OSError, ValueError):
        pass
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        write_merged(base, adapter, partial)
        (partial / MARKER).write_text(json.dumps(made_from), encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        os.rename(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("merged %s into %s at %s", adapter, base, out)
    return out


def write_merged(base: str, adapter: Path, folder: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(base, dtype="auto")
    dtype = model.get_input_embeddings().weight.dtype
    with torch.no_grad():
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.to(dtype)  # modules trained whole were saved in fp32
    merged.config.use_cache = True
    folder.mkdir(parents=True)
    if Path(base).is_dir():  # the tokenizer, processor and template files, as the base has them
        for source in Path(base).iterdir():
            if source.is_file() and source.name != "config.json" and not source.name.endswith(WEIGHT_FILES) \
                    and not source.name.endswith(".index.json"):
                shutil.copy2(source, folder / source.name)
    else:
        from backend.models.loading import load_processor, resolve

        load_processor(resolve(base)).save_pretrained(folder)
    merged.save_pretrained(folder)
