"""Export (issue 30): a trained demo job's checkpoint as a merged model that plain transformers loads
and that answers as base + adapter do, an adapter with its model card, a zip that peft opens; a disk
without room leaves nothing half-written, and a folder outside the work folder's exports/ is refused.

The job is trained for real (the training program in this process, the demo model on a held-out
split of the bundled sample, each checkpoint scored); full disks are real tmpfs mounts (root only)."""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from backend.data import read_bundled_sample, read_foodieqa_folder
from backend.data.split import build_training_set, load_training_set
from backend.disk import tree_size
from backend.evaluation import scoring
from backend.training.check import exact_answers, load_engine, questions
from backend.training.errors import TrainingError
from backend.training.export import ADAPTER, MERGED, ZIP, ExportError, export, export_source, load_base
from backend.training.job_folder import EXIT_OK, JobFiles, read_metrics, ready_checkpoints
from backend.training.lora import train
from backend.training.model_card import model_card
from backend.training.processes import StopFlag
from backend.training.samples import read_samples
from backend.training.spec import JobSpec, preset
from tests.conftest import EXAMPLES, own_workdir
from tests.test_disk import mount_tmpfs, unmount


@dataclass
class Trained:
    workdir: Path
    files: JobFiles
    spec: JobSpec
    engine: object  # the app's engine: the base with the final adapter loaded beside it as "final"
    trained_run: scoring.ScoreRun  # the Compare tab's score of the final adapter on its trained questions


@pytest.fixture(scope="module")
def trained(demo_workdir, tmp_path_factory) -> Trained:
    workdir = own_workdir(demo_workdir, tmp_path_factory.mktemp("export") / "work")
    folder = workdir / "datasets" / "sivqa"
    build_training_set(read_bundled_sample().records, folder, heldout_ratio=0.3, tasks=("sivqa",), seed=3)
    model = next((workdir / "models").iterdir())
    spec = preset("demo-cpu", model=str(model), data_file=str(folder / "train.json"), name="sivqa <b>dishes</b>",
                  image_root=json.loads((folder / "split.json").read_text())["image_root"],
                  output_dir=str(workdir / "jobs" / "sivqa-job"), score_set=str(folder), save_every=10, keep_last=1)
    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir(parents=True)
    spec.save(files.spec)
    assert train(spec, files, StopFlag()) == EXIT_OK
    engine = load_engine(str(model), {"final": files.adapter})
    # kept beside the adapter as the Compare tab keeps a scoring
    run = scoring.score(engine, load_training_set(folder).train_questions, adapter="final", split="trained",
                        lang="zh", batch_size=16)
    scoring.save(run, files.adapter)
    return Trained(workdir, files, spec, engine, run)


def test_the_merged_model_loads_with_plain_transformers_and_answers_as_base_and_adapter(trained):
    from peft import PeftModel
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    done = export(export_source(trained.files.root), [MERGED])
    assert done.adapter is None and done.zip is None and [p.name for p in done.folder.iterdir()] == ["merged"]
    merged = AutoModelForImageTextToText.from_pretrained(done.merged)  # as it is saved: bf16
    base = AutoModelForImageTextToText.from_pretrained(trained.spec.model, dtype=torch.float32).eval()
    assert type(merged) is type(base) and {p.dtype for p in merged.parameters()} == {torch.bfloat16}
    config = json.loads((done.merged / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16"  # the key LMDeploy 0.18 reads
    # processor, tokenizer and chat template are there (AutoProcessor itself needs torchvision, absent here)
    assert json.loads((done.merged / "processor_config.json").read_text())["processor_class"] == "Qwen2VLProcessor"
    assert type(AutoImageProcessor.from_pretrained(done.merged)).__name__.startswith("Qwen2VLImageProcessor")
    assert AutoTokenizer.from_pretrained(done.merged).chat_template == \
        AutoTokenizer.from_pretrained(trained.spec.model).chat_template

    # Greedy answers to every trained question: the merged model alone, as the app serves a base model,
    # against the base with the adapter beside it.
    samples, _ = read_samples(Path(trained.spec.data_file), trained.spec.images_dir)
    tuned = exact_answers(trained.engine, samples, "final")
    alone = exact_answers(load_engine(str(done.merged)), samples, None)
    assert tuned.exact >= tuned.asked // 2, "the adapter learned its answers"
    assert (alone.exact, alone.misses) == (tuned.exact, tuned.misses)

    # Logits: no further from base + adapter than the same adapter on the base rounded to bf16 is.
    reference = PeftModel.from_pretrained(base, str(trained.files.adapter)).eval()
    rounded = AutoModelForImageTextToText.from_pretrained(trained.spec.model, dtype=torch.bfloat16).float()
    yardstick = PeftModel.from_pretrained(rounded, str(trained.files.adapter)).eval()
    merged = merged.float().eval()
    for _, turns, _ in questions(samples)[:3]:
        inputs = trained.engine.prepare(turns)
        with torch.no_grad():
            want = reference(**inputs).logits
            rounding = (yardstick(**inputs).logits - want).abs().max()
            drift = (merged(**inputs).logits - want).abs().max()
        assert 0 < drift <= 2.5 * rounding, (drift, rounding)


def test_the_adapter_comes_with_a_model_card_of_its_base_data_settings_time_scores_and_terms(trained, tmp_path):
    done = export(export_source(trained.files.root), [ADAPTER])
    assert sorted(p.name for p in done.adapter.iterdir()) == ["README.md", "adapter_config.json",
                                                             "adapter_model.safetensors"]
    assert (done.adapter / "adapter_model.safetensors").read_bytes() == \
        (trained.files.adapter / "adapter_model.safetensors").read_bytes()
    card = (done.adapter / "README.md").read_text(encoding="utf-8")
    manifest = json.loads((Path(trained.spec.data_file).parent / "split.json").read_text())
    assert "library_name: peft" in card and f"`{trained.spec.model}`" in card
    assert "# sivqa &lt;b&gt;dishes&lt;/b&gt;: a LoRA adapter" in card  # a job's name is text, not markup
    assert "the final adapter (step 30 of 30)" in card
    assert "Data set: **sivqa**, saved from Foodie Studio's bundled sample" in card
    assert f"{manifest['heldout']['samples']} held-out samples of {len(manifest['heldout']['dish_ids'])} dishes" in card
    assert all(dish in card for dish in manifest["heldout"]["dish_ids"])
    assert "| LoRA rank r / alpha / dropout | 32 / 64 / 0.0 |" in card and "| epochs | 10 |" in card
    assert re.search(r"Training time: 0:00:\d\d of training steps", card)
    scored = next(r for r in read_metrics(trained.files.metrics) if "eval_accuracy" in r and r["step"] == 30)
    assert (f"| held-out · sivqa (held out) | while training | zh | {100 * scored['eval_accuracy']:.1f}% | "
            f"{scored['eval_questions']} |") in card
    run = trained.trained_run
    assert f"| trained | Compare tab | zh | {100 * run.accuracy:.1f}% | {len(run.questions)} |" in card
    assert "Noto Color Emoji" in card and "Apache License 2.0" in card and "CC BY-NC-ND" not in card

    # A checkpoint other than the final one is named as such.
    step, folder = ready_checkpoints(trained.files)[0]
    other = export(export_source(folder), [ADAPTER])
    assert f"checkpoint step-{step:06d} (step {step} of 30)" in (other.adapter / "README.md").read_text()

    # Trained on FoodieQA: its license and terms; a QLoRA job: how its merge is made.
    foodieqa = tmp_path / "foodieqa-set"
    build_training_set(read_foodieqa_folder(EXAMPLES).records, foodieqa, tasks=("sivqa",), accept_terms=True)
    spec = trained.spec.with_changes(data_file=str(foodieqa / "train.json"))
    card = model_card(trained.files, spec, trained.files.adapter, None, trained.workdir, quantized=True)
    assert "saved from FoodieQA" in card and "FoodieQA's terms were accepted" in card
    assert "CC BY-NC-ND 4.0" in card and "research and evaluation only" in card
    assert "**QLoRA**" in card and "*dequantized*" in card


def test_the_zip_holds_the_adapter_and_opens_with_peft(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    done = export(export_source(trained.files.root), [ZIP], name="to-share")
    assert done.folder == trained.workdir / "exports" / "to-share" and done.zip.name == "to-share-adapter.zip"
    with zipfile.ZipFile(done.zip) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == [f"to-share-adapter/{name}" for name in
                                              ("README.md", "adapter_config.json", "adapter_model.safetensors")]
        archive.extractall(tmp_path)
    def loaded(adapter: Path | None):
        model = AutoModelForImageTextToText.from_pretrained(trained.spec.model, dtype=torch.float32)
        return (PeftModel.from_pretrained(model, str(adapter)) if adapter else model).eval()

    samples, _ = read_samples(Path(trained.spec.data_file), trained.spec.images_dir)
    inputs = trained.engine.prepare(questions(samples)[0][1])
    with torch.no_grad():
        unzipped = loaded(tmp_path / "to-share-adapter")(**inputs).logits
        assert torch.equal(unzipped, loaded(trained.files.adapter)(**inputs).logits)
        assert not torch.allclose(unzipped, loaded(None)(**inputs).logits)  # and it does change the model


def test_an_export_the_disk_has_no_room_for_leaves_nothing_half_written(trained, tmp_path):
    exports = tmp_path / "work" / "exports"
    source = export_source(trained.files.root, tmp_path / "work")
    mount_tmpfs(exports, "2m")  # the check before writing says no
    try:
        with pytest.raises(TrainingError) as refused:
            export(source, [MERGED, ADAPTER])
        assert refused.value.problem.key == "disk_space_short"
        assert str(refused.value).startswith("Exporting the adapter needs about ")
        assert list(exports.iterdir()) == [] and tree_size(exports) == 0
    finally:
        unmount(exports)
    # Room enough by the check, but the disk fills midway: four inodes hold the export's folder, the
    # hidden partial one and two of the merged model's files, and the third file meets a full disk.
    mount_tmpfs(exports, "64m,nr_inodes=5")
    try:
        with pytest.raises(TrainingError) as full:
            export(source, [MERGED])
        assert full.value.problem.key == "disk_full_export", full.value
        assert "filled up while the merged model was written; nothing half-written was kept" in str(full.value)
        assert list(exports.iterdir()) == []
    finally:
        unmount(exports)


def test_a_folder_outside_the_exports_folder_is_refused(trained, tmp_path):
    exports = trained.workdir / "exports"
    exports.mkdir(exist_ok=True)
    (exports / "way-out").symlink_to(tmp_path, target_is_directory=True)
    source = export_source(trained.files.root)
    job_folder = sorted(str(p) for p in trained.files.root.rglob("*"))
    for name in ("../jobs/sivqa-job", str(tmp_path / "elsewhere"), "a/../../../outside", "way-out/inside", "a\nb"):
        with pytest.raises(ExportError) as refused:
            export(source, [ADAPTER], name=name)
        assert refused.value.problem.key == "export_outside" and "would lead elsewhere" in str(refused.value)
    assert list(tmp_path.iterdir()) == [] and not (trained.workdir / "outside").exists()
    assert sorted(str(p) for p in trained.files.root.rglob("*")) == job_folder


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None,
                    reason="bitsandbytes is installed here: the QLoRA merge would run instead")
def test_merging_a_qlora_checkpoint_without_bitsandbytes_is_a_sentence(trained):
    with pytest.raises(ExportError) as refused:
        load_base(trained.spec.model, quantized=True)
    assert refused.value.problem.key == "export_needs_bitsandbytes"
    assert "(QLoRA)" in str(refused.value) and "export the adapter alone" in str(refused.value)


def test_every_reason_an_export_fails_has_a_chinese_sentence_with_the_same_values():
    from backend.training import export as export_module
    from tests.test_data_problems import fields, raised_sentences
    from ui.problems import ZH

    path = Path(export_module.__file__)
    sentences = raised_sentences([path], errors=("ExportError",), problems_in=(path.parent,))
    assert {"export_outside", "disk_full_export", "space_export", "export_needs_bitsandbytes"} <= set(sentences)
    assert set(sentences) - set(ZH) == set()
    assert all(fields(ZH[key]) == fields(sentence) for key, sentence in sentences.items())
