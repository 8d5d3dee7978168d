"""A QLoRA job's input embedding table in CPU memory (backend/training/host_embeddings.py): the same rows,
left behind by model.to(), and read by the packed path from the CPU's copy of the ids."""

from __future__ import annotations

import pytest
import torch

from backend.training.encoding import SampleDataset
from backend.training.host_embeddings import HostEmbedding, keep_embeddings_on_host, tied
from backend.training.packed import PackedCache, PackedLoss, PackedSample, pack, prepare
from backend.training.samples import sample_from_record
from tests.test_training_packed import EXAMPLES, MAX_LENGTH, PIXELS, RECORDS, lora_grads, lora_model

GPU = torch.device("cuda")  # only named: nothing here runs on it


def test_rows_looked_up_in_cpu_memory_equal_the_tables_own() -> None:
    table = torch.nn.Embedding(50, 8, padding_idx=0)
    host = HostEmbedding(table, torch.device("cpu"))
    ids = torch.tensor([[3, 0, 49], [7, 7, 1]])

    assert torch.equal(host(ids), table(ids))
    assert host.weight.shape == (50, 8)
    # not a parameter or a buffer: moves and saves of the model leave it alone
    holder = torch.nn.Sequential(host).to(torch.float64)
    assert host.table.dtype == torch.float32 and not list(holder.state_dict())


def test_only_a_table_of_its_own_on_a_gpu_job_moves(tiny_models) -> None:
    untied, _ = lora_model(tiny_models["internvl"])
    assert not tied(untied)
    assert keep_embeddings_on_host(untied, torch.device("cpu")) == 0.0  # a CPU job: it is in CPU memory already
    assert keep_embeddings_on_host(untied, GPU) > 0
    assert isinstance(untied.get_input_embeddings(), HostEmbedding)
    assert not any(p.data_ptr() == untied.get_input_embeddings().table.data_ptr() for p in untied.parameters())

    shared, _ = lora_model(tiny_models["qwen3_vl"])  # tied, as Qwen3-VL-2B's
    assert tied(shared)  # the LM head reads the same tensor: the GPU keeps it either way
    assert keep_embeddings_on_host(shared, GPU) == 0.0
    assert not isinstance(shared.get_input_embeddings(), HostEmbedding)


def test_a_packed_row_looks_up_the_cpu_copy_of_its_ids_and_learns_the_same(tiny_models) -> None:
    model, processor = lora_model(tiny_models["internvl"])
    samples = [sample_from_record(record, EXAMPLES) for record in RECORDS]
    encoded = [SampleDataset(samples, processor, PIXELS, MAX_LENGTH)[i] for i in range(len(samples))]
    row = pack(prepare(model, encoded, torch.device("cpu"), torch.float32))
    assert torch.equal(row.host_ids, row.input_ids.cpu())

    before = PackedLoss(model)(row)
    before.backward()
    want = lora_grads(model)

    model.set_input_embeddings(HostEmbedding(model.get_input_embeddings(), torch.device("cpu")))
    given = []
    model.get_input_embeddings().register_forward_hook(lambda module, args, out: given.append(args[0]))
    after = PackedLoss(model)(row)
    after.backward()

    assert given and given[0] is row.host_ids  # not the device's ids, whose read-back would wait for the GPU
    assert torch.equal(after, before)
    for got, expected in zip(lora_grads(model), want, strict=True):
        assert torch.equal(got, expected)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the device machine)")


@cuda
def test_on_a_gpu_the_rows_arrive_there_equal_to_the_gpu_tables() -> None:
    table = torch.nn.Embedding(1000, 64).to(torch.bfloat16)
    host = HostEmbedding(table, GPU)
    on_gpu = table.to(GPU)
    ids = torch.randint(0, 1000, (3, 77))
    for given in (ids, ids.to(GPU)):
        got = host(given)
        assert got.device.type == "cuda" and torch.equal(got, on_gpu(ids.to(GPU)))


@cuda
def test_picture_embeddings_kept_in_cpu_memory_come_back_to_the_row_unchanged() -> None:
    cache = PackedCache(2**30, on_host=True)
    picture = torch.randn(300, 64, device=GPU, dtype=torch.bfloat16)
    kept = cache.put_picture("photo", picture)
    assert kept.device.type == "cpu" and kept.is_pinned() and cache.picture("photo") is kept

    ids = torch.zeros(310, dtype=torch.long)
    sample = PackedSample(ids.to(GPU), ids.to(GPU), torch.arange(310).to(GPU), (kept,), torch.tensor([309]), ids)
    row = pack([sample, sample])
    assert row.image_embeds.device.type == "cuda"
    assert torch.equal(row.image_embeds, torch.cat([picture, picture]))
