"""Alpaca rows with no dataset_info.json beside them: a JSON list of {"instruction", "input", "output",
"system", "history", "images"}, the question being instruction and input joined, one "<image>" per
picture as LLaMA-Factory's multimodal sets write it. The same rows named by a dataset_info.json entry
are read through it (llamafactory.py), with its column names.

Follows LLaMA-Factory's data/README.md ("Alpaca Format") and Stanford Alpaca's alpaca_data.json.
"""

from __future__ import annotations

from typing import Any

import backend.data.formats.sharegpt as sharegpt
from backend.data.formats.base import Format, ReadContext, Sample, rows_sureness
from backend.data.schema import ReadResult

LABEL = "Alpaca (LLaMA-Factory)"
MAPPING = sharegpt.Mapping(formatting="alpaca", history="history")


def fits(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("instruction"), str) and "output" in row


def detect(sample: Sample) -> float:
    return rows_sureness(sample, fits, json=0.6, jsonl=0.45)


def read(sample: Sample, context: ReadContext) -> ReadResult:
    return sharegpt.read_with(sample, context, MAPPING, LABEL)


FORMAT = Format("alpaca", LABEL, detect, read, None, ".json")
