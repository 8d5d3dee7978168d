"""Choosing a reader for a folder (`--data DIR`), and putting several sources together."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from backend.data.foodieqa import FOODIEQA_FILES, read_foodieqa_folder
from backend.data.own_data import read_own_data
from backend.data.schema import DataError, ReportLine, ReadResult, Record
from backend.problems import Problem


def read_data_folder(path: str | Path) -> ReadResult:
    """FoodieQA's layout if the folder holds any of its files, otherwise own data (.json / .csv)."""
    target = Path(path).expanduser()
    if target.is_dir() and any((target / name).exists() for name in FOODIEQA_FILES.values()):
        return read_foodieqa_folder(target)
    if not target.exists():
        raise DataError("nothing_at", "There is nothing at {path}.", path=target)
    return read_own_data(target)


def combine_results(results: Iterable[ReadResult]) -> ReadResult:
    """Several sources as one: records in order, an id seen before is reported and skipped."""
    results = list(results)
    if not results:
        raise DataError("no_source", "No data source was chosen.")
    records: list[Record] = []
    problems: list[ReportLine] = []
    seen: dict[str, str] = {}
    for result in results:
        problems.extend(result.problems)
        for record in result.records:
            if record.id in seen:
                problems.append(ReportLine(record.origin or str(result.root), None, record.id, Problem(
                    "record_id_taken", "The id {id} is already used by {origin}. The record was skipped.",
                    id=record.id, origin=seen[record.id])))
                continue
            seen[record.id] = record.origin or str(result.root)
            records.append(record)
    sources = sorted({r.source for r in results})
    return ReadResult(tuple(records), tuple(problems), results[0].root, "+".join(sources))
