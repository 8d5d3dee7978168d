"""A QLoRA job's input embedding table kept in CPU memory instead of on the GPU.

The table is frozen and read only by a lookup: a step reads a few thousand of its rows (~20 MB for
2,800 tokens of a 7B model), while the whole table is 1.1 GB on the GPU (Qwen2.5-VL-7B: 152,064 x
3,584 in bf16), as much as its 4-bit decoder's largest quarter. So the rows are looked up on the CPU
and copied over; nothing else of the model moves.

Only for a table of its own: where the LM head shares it (tied embeddings, as in 2B models), the GPU
keeps it for the head anyway. bitsandbytes quantizes linear layers only, so 4 bits would not reach
the table; in CPU memory it also keeps every bit of its precision."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger("foodie.train")


class HostEmbedding(torch.nn.Module):
    """An embedding lookup whose table lives in CPU memory; the rows found go to `device`.

    The table is a plain attribute, not a parameter or buffer, so `model.to(device)` leaves it where it
    is and nothing saves it (it is the base model's, unchanged). Ids already on the CPU cost no wait; ids
    on the GPU are read back first, which waits for the GPU's queued work (the packed path passes the
    CPU copy it keeps: packed.PackedRow.host_ids)."""

    def __init__(self, table: torch.nn.Embedding, device: torch.device) -> None:
        super().__init__()
        self.table = table.weight.detach().to("cpu")
        self.padding_idx = table.padding_idx
        self.num_embeddings, self.embedding_dim = self.table.shape
        self.device = device

    @property
    def weight(self) -> torch.Tensor:  # what code that asks an embedding for its weight's dtype reads
        return self.table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids.cpu(), self.table, self.padding_idx)
        if self.device.type == "cuda":  # from page-locked memory the copy runs behind the CPU's back
            rows = rows.pin_memory()
        return rows.to(self.device, non_blocking=True)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, in CPU memory"


def tied(model: torch.nn.Module) -> bool:
    """Whether the LM head uses the input embedding table's own tensor."""
    head = model.get_output_embeddings()
    return head is not None and head.weight is model.get_input_embeddings().weight


def keep_embeddings_on_host(model: torch.nn.Module, device: torch.device) -> float:
    """`model`'s input embedding table moved to CPU memory (HostEmbedding) unless the LM head shares it;
    returns the GPU memory given back, in GB (0 where nothing moved)."""
    table = model.get_input_embeddings()
    if device.type != "cuda" or isinstance(table, HostEmbedding) or tied(model):
        return 0.0
    freed = table.weight.numel() * table.weight.element_size() / 1e9
    model.set_input_embeddings(HostEmbedding(table, device))
    log.info("the input embedding table stays in CPU memory (%.2f GB less on the GPU; each step's rows are "
             "looked up there and copied over)", freed)
    return freed
