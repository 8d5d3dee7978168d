"""The packed path (backend/training/packed.py) must learn exactly what the padded path learns:
the same loss and the same gradients on the same micro-batch, with pictures encoded once per run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backend.training.encoding import SampleDataset, collate
from backend.training.job_folder import JobFiles
from backend.training.lora import train
from backend.training.lora_forward import _joint_weight
from backend.training.model import build_model
from backend.training.packed import PackedLoss, pack, prepare
from backend.training.processes import StopFlag
from backend.training.samples import sample_from_record
from backend.training.spec import preset
from backend.training.steps import answer_loss

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PIXELS = 112 * 112
# Room for every sample whole, whatever size this transformers' processor makes of a picture.
MAX_LENGTH = 4096

# Different lengths (so the padded batch has padding), two turns, two pictures, and no picture.
RECORDS = [
    {"id": "short", "image": "images/jiaozi-0.jpg", "conversations": [
        {"from": "human", "value": "<image>\n这是什么菜？"}, {"from": "gpt", "value": "饺子。"}]},
    {"id": "two-turns", "image": "images/chongqing-hotpot-1.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat dish is this?"},
        {"from": "gpt", "value": "This is Chongqing hotpot."},
        {"from": "human", "value": "Where is it from?"}, {"from": "gpt", "value": "Chongqing, in the south-west."}]},
    {"id": "two-pictures", "images": ["images/jiaozi-1.jpg", "images/peking-duck-0.jpg"], "conversations": [
        {"from": "human", "value": "<image>\n<image>\nWhich one is duck?"}, {"from": "gpt", "value": "The second."}]},
    {"id": "text-only", "conversations": [
        {"from": "human", "value": "Name a dish from Guangdong."}, {"from": "gpt", "value": "Char siu."}]},
]


def lora_model(folder: Path):
    spec = preset("demo-cpu", model=str(folder), data_file=str(EXAMPLES / "dishes.json"), lora_dropout=0.0)
    model, processor, _, _ = build_model(spec, torch.device("cpu"), torch.float32)
    # LoRA's B starts at zero, which would make both paths trivially equal to the base model.
    torch.manual_seed(1)
    for param in model.parameters():
        if param.requires_grad:
            param.data.normal_(0, 0.02)
    return model.eval(), processor


def lora_grads(model) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    return grads


# qwen3_vl: interleaved M-RoPE and DeepStack; internvl, internvl3_5 (tiles), internvl2 (converted): 1-D positions
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl", "internvl3_5", "internvl2"])
def test_packed_and_padded_paths_give_the_same_loss_and_gradients(tiny_models, family: str) -> None:
    model, processor = lora_model(tiny_models[family])
    samples = [sample_from_record(record, EXAMPLES) for record in RECORDS]
    encoded = [SampleDataset(samples, processor, PIXELS, MAX_LENGTH)[i] for i in range(len(samples))]
    assert len({len(e.labels) for e in encoded}) == len(encoded)  # the padded batch really pads

    batch = collate(encoded, processor.tokenizer.pad_token_id)
    labels = batch.pop("labels")
    padded = answer_loss(model(**batch).logits, labels)
    padded.backward()
    padded_grads = lora_grads(model)

    row = pack(prepare(model, encoded, torch.device("cpu"), torch.float32))
    assert row.bounds[-1] == len(row.input_ids) == sum(len(e.labels) for e in encoded)  # no padding at all
    packed = PackedLoss(model)(row)
    packed.backward()
    packed_grads = lora_grads(model)

    assert row.answer_tokens == int((labels[:, 1:] != -100).sum())
    assert torch.isclose(packed, padded, rtol=1e-5), (packed.item(), padded.item())
    for got, want in zip(packed_grads, padded_grads, strict=True):
        # fp32 sums in another order: compare each gradient as a whole, relative to its size
        assert (got - want).norm() <= 1e-4 * want.norm(), ((got - want).norm() / want.norm()).item()


@pytest.mark.parametrize("fused_backward", [True, False])
def test_the_folded_lora_forward_computes_what_peft_computes(tiny_models, fused_backward: bool) -> None:
    """lora_forward.py's one-product forward, as one autograd node (LoraLinear) or as separate
    operations, against peft's own, dropout on: same masks, same maths, same gradients."""
    model, processor = lora_model(tiny_models["qwen2_vl"])
    folded = [m for m in model.modules() if "forward" in vars(m) and hasattr(m, "lora_A")]
    assert folded, "build_model gives the packed path the folded LoRA forward"
    for module in folded:
        module.fused_backward = fused_backward
    probe = folded[0]
    node = probe(torch.randn(3, probe.in_features, requires_grad=True)).grad_fn.next_functions[0][0]  # under a view
    assert (type(node).__name__ == "LoraLinearBackward") == fused_backward, type(node).__name__
    # the node's forward is one product over [x | low] wherever the layer is not wider in than out
    joined = [m for m in folded if _joint_weight(m, "default") is not None]
    assert joined and all(m.in_features <= m.out_features for m in joined)
    samples = [sample_from_record(record, EXAMPLES) for record in RECORDS]
    batch = collate([SampleDataset(samples, processor, PIXELS, MAX_LENGTH)[i] for i in range(len(samples))],
                    processor.tokenizer.pad_token_id)
    labels = batch.pop("labels")
    for module in folded:
        module.lora_dropout["default"].p = 0.3
    model.train()

    def loss_and_grads():
        torch.manual_seed(5)
        loss = answer_loss(model(**batch).logits, labels)
        loss.backward()
        return loss.detach(), lora_grads(model)

    ours, our_grads = loss_and_grads()
    for module in folded:
        del module.forward  # back to peft's class method
    peft_loss, peft_grads = loss_and_grads()
    assert torch.isclose(ours, peft_loss, rtol=1e-5), (ours.item(), peft_loss.item())
    for got, want in zip(our_grads, peft_grads, strict=True):
        assert (got - want).norm() <= 1e-4 * want.norm(), ((got - want).norm() / want.norm()).item()


def test_a_joint_weight_holds_the_frozen_weight_and_gives_the_layers_output() -> None:
    """join_frozen_and_adapter_weights: the frozen weight becomes a view into [W | scaling B] (no
    second copy), the one-product forward gives what the product and the add give, and a layer whose
    weight was moved away from the joint one (a dtype change makes new weights) takes the add path."""
    from peft import LoraConfig, get_peft_model

    from backend.training.lora_forward import fold_lora_scaling, join_frozen_and_adapter_weights

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.Linear(40, 24))
    model = get_peft_model(net, LoraConfig(r=8, lora_alpha=24, target_modules=["0", "1"]))
    model.requires_grad_(False)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(True)
            param.data.normal_(0, 0.1)
    wide, narrow = model.base_model.model[0], model.base_model.model[1]
    x = torch.randn(7, 24)
    want = model(x)
    assert fold_lora_scaling(model) == 2
    assert join_frozen_and_adapter_weights(model) == 1  # 24 -> 40 only; 40 -> 24 keeps the add
    joint = _joint_weight(wide, "default")
    assert joint is not None and _joint_weight(narrow, "default") is None
    assert wide.base_layer.weight.data_ptr() == joint.data_ptr() and joint.shape == (40, 24 + 8)
    got = model(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), (got - want).abs().max()
    assert torch.equal(joint[:, 24:], wide.lora_B["default"].weight * wide.scaling["default"])
    got.sum().backward()
    assert wide.lora_B["default"].weight.grad is not None
    model.double()
    assert _joint_weight(wide, "default") is None
    assert torch.allclose(model(x.double()).float(), want, rtol=1e-5, atol=1e-6)


def test_adapters_cast_once_a_step_are_used_until_the_optimizer_changes_them() -> None:
    """LowPrecisionAdapters: inside step() each layer takes its A and B from the copies (spoiling a
    copy changes the output, so they are really used) and gives peft's output; after the step, or
    once the weights were changed in place inside it (their version counters move), every layer
    casts its own again."""
    from peft import LoraConfig, get_peft_model

    from backend.training.lora_forward import LowPrecisionAdapters, fold_lora_scaling, join_frozen_and_adapter_weights

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.Linear(40, 24))
    model = get_peft_model(net, LoraConfig(r=8, lora_alpha=24, target_modules=["0", "1"]))
    model.requires_grad_(False)
    lora = [param for name, param in model.named_parameters() if "lora_" in name]
    for param in lora:
        param.requires_grad_(True)
        param.data.normal_(0, 0.1)
    x = torch.randn(7, 24)
    want = model(x)
    fold_lora_scaling(model)
    join_frozen_and_adapter_weights(model)  # the first layer's B goes into its joint weight, scaled
    adapters = LowPrecisionAdapters(model, torch.float32)
    layers = [model.base_model.model[0], model.base_model.model[1]]

    def ready(layer, x):
        return adapters.ready(layer, "default", x, _joint_weight(layer, "default"))

    assert all(ready(layer, x) is None for layer in layers)  # not cast yet
    optimizer = torch.optim.AdamW(lora, lr=0.1)
    with adapters.step():
        assert all(ready(layer, x) is not None for layer in layers)
        assert ready(layers[0], x.double()) is None  # another compute dtype
        assert torch.allclose(model(x), want, rtol=1e-5, atol=1e-6)
        for layer in layers:
            a_copy = ready(layer, x)[0]
            saved = a_copy.clone()
            a_copy.zero_()
            assert not torch.allclose(model(x), want, rtol=1e-3, atol=1e-4)
            a_copy.copy_(saved)
        model(x).square().sum().backward()
        optimizer.step()  # in the step (not where train() does it): the version counters tell
        assert all(ready(layer, x) is None for layer in layers)
    assert all(ready(layer, x) is None for layer in layers)  # after the step
    stepped = model(x)
    for layer in layers:
        del layer.forward  # peft's own forward, on the stepped weights
    assert torch.allclose(stepped, model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_the_patch_embedding_as_one_product_equals_the_convolution(tiny_models, family: str) -> None:
    model, processor = lora_model(tiny_models[family])
    embed = model.get_base_model().model.visual.patch_embed
    assert "forward" in vars(embed), "build_model gives the packed path the product form"
    sample = sample_from_record(RECORDS[0], EXAMPLES)
    pixels = SampleDataset([sample], processor, PIXELS, MAX_LENGTH)[0].inputs["pixel_values"]
    with torch.no_grad():
        product, convolution = embed(pixels), type(embed).forward(embed, pixels)
    assert product.shape == convolution.shape
    assert torch.allclose(product, convolution, rtol=1e-4, atol=1e-5), (product - convolution).abs().max()


def test_samples_do_not_see_each_other_in_a_packed_row(tiny_models) -> None:
    """A sample's loss is the same alone and packed behind another one."""
    model, processor = lora_model(tiny_models["qwen2_vl"])
    samples = [sample_from_record(record, EXAMPLES) for record in RECORDS[:2]]
    dataset = SampleDataset(samples, processor, PIXELS, MAX_LENGTH)
    first, second = prepare(model, [dataset[0], dataset[1]], torch.device("cpu"), torch.float32)
    loss = PackedLoss(model)
    with torch.no_grad():
        together = loss(pack([first, second]))
        apart = loss(pack([first])) + loss(pack([second]))
    assert torch.isclose(together, apart, rtol=1e-5)


def test_a_run_encodes_each_picture_once_and_reuses_it_in_later_epochs(demo_workdir: Path, tmp_path: Path,
                                                                        caplog) -> None:
    from backend.training.demo_data import demo_records, demo_spec
    from backend.training.samples import write_samples

    data = write_samples(demo_records()[:16], tmp_path / "sixteen.json")
    spec = demo_spec(demo_workdir, data_file=str(data), epochs=3, batch_size=4, save_every=0,
                     output_dir=str(tmp_path / "job"))
    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir()
    with caplog.at_level("INFO", logger="foodie.train"):
        assert train(spec, files, StopFlag()) == 0
    log = caplog.text
    records = [json.loads(line) for line in files.metrics.read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 13))
    # 16 samples, 8 photos (each asked in Chinese and in English): 8 passes through the tower in all
    photos = {record["image"] for record in demo_records()[:16]}
    assert len(photos) == 8
    assert ("samples prepared 16 times, reused from the cache 32 times; the prepared samples showed 16 "
            f"pictures, {len(photos)} of them went through the vision tower") in log, log[-2000:]


def test_a_step_that_fails_keeps_the_record_of_the_step_before(demo_workdir: Path, tmp_path: Path,
                                                               monkeypatch) -> None:
    """Each step's totals are read one step late, while the next step runs (step_totals.py); when
    that next step fails (here the third, made to raise), the second's record is still written."""
    from backend.training import steps
    from backend.training.demo_data import demo_records, demo_spec
    from backend.training.samples import write_samples

    data = write_samples(demo_records()[:16], tmp_path / "sixteen.json")
    spec = demo_spec(demo_workdir, data_file=str(data), epochs=3, batch_size=4, save_every=0,
                     output_dir=str(tmp_path / "job"))
    files = JobFiles(Path(spec.output_dir))
    files.root.mkdir()
    steps_run = []
    real_run = steps.PackedSteps.forward_backward

    def third_step_fails(self, group_batches):
        steps_run.append(len(group_batches))
        if len(steps_run) == 3:
            raise RuntimeError("the third step failed")
        return real_run(self, group_batches)

    monkeypatch.setattr(steps.PackedSteps, "forward_backward", third_step_fails)
    with pytest.raises(RuntimeError, match="third step"):
        train(spec, files, StopFlag())
    records = [json.loads(line) for line in files.metrics.read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]


def test_out_of_memory_advice_fits_the_path_the_job_trains_on(tiny_models) -> None:
    from backend.training.lora import out_of_memory_sentence
    from backend.training.model import model_type_of, packs

    qwen = preset("2b-gpu", model=str(tiny_models["qwen2_vl"]), data_file="samples.json")
    said = out_of_memory_sentence(qwen, packs(qwen, model_type_of(qwen)))
    assert "rows of up to 16384 tokens" in said and "larger gradient accumulation does not" in said
    # the same spec for a family that trains padded: no advice about rows it does not have
    llava = qwen.with_changes(model=str(tiny_models["llava"]))
    assert model_type_of(llava) == "llava" and not packs(llava, "llava")
    padded = out_of_memory_sentence(llava, packs(llava, model_type_of(llava)))
    assert "raise gradient accumulation to keep the effective batch" in padded and "pack_tokens" not in padded
    assert not packs(qwen.with_changes(packed=False), "qwen2_vl")
    assert model_type_of(qwen.with_changes(model="/nowhere/model")) == ""  # the padded advice, then


def test_pictures_handed_over_in_the_model_dtype_give_the_same_embeddings(tiny_models) -> None:
    """The loader casts each picture's patches to the model's dtype (half the bytes to pin and copy);
    the vision tower must see exactly what it saw when the cast came with the copy."""
    model, processor = lora_model(tiny_models["qwen2_vl"])
    model.to(torch.bfloat16)
    samples = [sample_from_record(record, EXAMPLES) for record in RECORDS[:3]]
    encoded = [SampleDataset(samples, processor, PIXELS, MAX_LENGTH)[i] for i in range(len(samples))]
    handed_over = [e.with_pixels_as(torch.bfloat16) for e in encoded]
    assert all(e.inputs["pixel_values"].dtype == torch.float32 for e in encoded)  # the originals are untouched
    assert all(e.inputs["pixel_values"].dtype == torch.bfloat16 for e in handed_over)
    assert handed_over[0].with_pixels_as(torch.bfloat16) is handed_over[0]

    as_before = prepare(model, encoded, torch.device("cpu"), torch.bfloat16)
    as_now = prepare(model, handed_over, torch.device("cpu"), torch.bfloat16)
    for before, now in zip(as_before, as_now, strict=True):
        assert before.pictures and all(torch.equal(a, b) for a, b in zip(before.pictures, now.pictures, strict=True))


def test_a_packed_row_keeps_no_key_value_cache(tiny_models) -> None:
    """Training never reads a KV cache; the text config's default would fill one at every layer."""
    from backend.training.packed import _inner

    model, processor = lora_model(tiny_models["qwen2_vl"])
    samples = [sample_from_record(record, EXAMPLES) for record in RECORDS[:2]]
    encoded = [SampleDataset(samples, processor, PIXELS, MAX_LENGTH)[i] for i in range(len(samples))]
    assert _inner(model).language_model.config.use_cache  # what the call must override
    outputs = []
    hook = _inner(model).language_model.register_forward_hook(lambda module, args, out: outputs.append(out))
    try:
        PackedLoss(model)(pack(prepare(model, encoded, torch.device("cpu"), torch.float32)))
    finally:
        hook.remove()
    assert len(outputs) == 1 and outputs[0].past_key_values is None


def test_row_bounds_give_the_kernel_a_power_of_two_at_least_the_longest_sample() -> None:
    from backend.training.packed import RowBounds

    for starts, bound in [([0, 687, 1300], 1024), ([0, 512], 512), ([0, 513, 600], 1024), ([0, 1], 1),
                          ([0, 3000, 4000], 4096)]:
        assert RowBounds.of(starts, torch.device("cpu")).longest == bound


def test_compiled_layers_are_asked_for_gpus_only(tiny_models) -> None:
    spec = preset("demo-cpu", model=str(tiny_models["qwen2_vl"]), data_file=str(EXAMPLES / "dishes.json"),
                  compile_layers=True)
    model, _, _, packed = build_model(spec, torch.device("cpu"), torch.float32)
    assert packed
    layers = model.get_base_model().model.language_model.layers
    assert all(layer._compiled_call_impl is None for layer in layers)  # on a CPU: eager, no compiler needed


def test_the_towers_inputs_worked_out_on_the_cpu_give_transformers_features(tiny_models) -> None:
    """prepare() hands the vision tower its rotary positions and attention bounds, worked out from
    the grid on the CPU (so the GPU is never waited for); the features are transformers' own."""
    from backend.training.packed import _image_features, _inner, _tower_inputs

    model, processor = lora_model(tiny_models["qwen2_vl"])
    dataset = SampleDataset([sample_from_record(record, EXAMPLES) for record in RECORDS[:3]], processor, PIXELS,
                            MAX_LENGTH)
    encoded = [dataset[i] for i in range(3)]
    pixels = torch.cat([e.inputs["pixel_values"] for e in encoded])
    grid = torch.cat([e.inputs["image_grid_thw"] for e in encoded])
    inner, cpu = _inner(model), torch.device("cpu")
    assert len(grid) >= 3 and set(_tower_inputs(inner, grid, cpu)) == {"position_ids", "cu_seqlens", "max_seqlen"}
    with torch.no_grad():
        ours = _image_features(inner, pixels, grid, cpu)
        own = torch.cat(list(inner.get_image_features(pixel_values=pixels, image_grid_thw=grid).pooler_output))
    assert torch.equal(ours, own)


def test_a_picture_shown_by_several_samples_goes_through_the_tower_once(tiny_models) -> None:
    """FoodieQA asks several questions about one photo: its embeddings are computed once, shared by
    the samples (in one call and, through the cache, in later ones), and equal to what the sample
    alone would get. The picture that two samples share here is jiaozi-1.jpg."""
    from backend.training.packed import PackedCache, _inner

    model, processor = lora_model(tiny_models["qwen2_vl"])
    again = {"id": "again", "image": "images/jiaozi-1.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "Jiaozi."}]}
    samples = [sample_from_record(record, EXAMPLES) for record in (RECORDS[2], again, RECORDS[0])]
    dataset = SampleDataset(samples, processor, PIXELS, MAX_LENGTH)
    shown = []
    hook = _inner(model).visual.register_forward_hook(
        lambda module, args, kwargs, out: shown.append(len(kwargs.get("grid_thw", args[1] if len(args) > 1 else []))),
        with_kwargs=True)
    cache = PackedCache(2**30)
    two_pictures, same_picture, _ = prepare(model, [dataset[0], dataset[1], dataset[2]], torch.device("cpu"),
                                                torch.float32, cache)
    assert shown == [3]  # jiaozi-1, peking-duck-0, jiaozi-0: the shared photo once
    assert same_picture.pictures[0] is two_pictures.pictures[0]
    alone = prepare(model, [dataset[1]], torch.device("cpu"), torch.float32)[0]  # no cache: computed anew
    assert shown == [3, 1]
    assert torch.allclose(alone.pictures[0], same_picture.pictures[0], rtol=1e-4, atol=1e-5)
    later = prepare(model, [dataset[1]], torch.device("cpu"), torch.float32, cache)[0]  # a later step
    assert shown == [3, 1] and later.pictures[0] is same_picture.pictures[0]
    assert (cache.pictures_computed, cache.pictures_reused) == (3, 1)
    # A cache too small to keep anything still shares the picture within one call.
    tiny = PackedCache(0)
    first, second = prepare(model, [dataset[0], dataset[1]], torch.device("cpu"), torch.float32, tiny)
    assert second.pictures[0] is first.pictures[0] and not tiny.pictures and tiny.over_budget
    hook.remove()
    with torch.no_grad():
        loss = PackedLoss(model)
        assert torch.isclose(loss(pack([same_picture])), loss(pack([alone])), rtol=1e-4)


def test_internvl_tiles_of_a_photo_shown_by_two_samples_go_through_the_tower_once(tiny_models) -> None:
    """InternVL's pictures are tiles (up to 12 and a thumbnail), found as runs of image tokens: a photo
    two samples show is tiled and embedded once, and gives the loss it gives alone."""
    from backend.training.packed import PackedCache, _inner

    model, processor = lora_model(tiny_models["internvl"])
    again = {"id": "again", "image": "images/jiaozi-1.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "Jiaozi."}]}
    samples = [sample_from_record(record, EXAMPLES) for record in (RECORDS[2], again)]
    dataset = SampleDataset(samples, processor, PIXELS, MAX_LENGTH)
    assert len(dataset[1].inputs["pixel_values"]) > 1  # the photo is several tiles
    tiles = []
    hook = _inner(model).vision_tower.register_forward_hook(
        lambda module, args, kwargs, out: tiles.append(len(kwargs.get("pixel_values", args[0] if args else []))),
        with_kwargs=True)
    cache = PackedCache(2**30)
    two_pictures, same_picture = prepare(model, [dataset[0], dataset[1]], torch.device("cpu"), torch.float32, cache)
    hook.remove()
    assert tiles == [len(dataset[0].inputs["pixel_values"])]  # jiaozi-1 and peking-duck-0, once each
    assert same_picture.pictures[0] is two_pictures.pictures[0]
    assert (cache.pictures_computed, cache.pictures_reused) == (2, 0)
    alone = prepare(model, [dataset[1]], torch.device("cpu"), torch.float32)[0]
    with torch.no_grad():
        loss = PackedLoss(model)
        assert torch.isclose(loss(pack([same_picture])), loss(pack([alone])), rtol=1e-4)
