"""Chat's "Train on my notes": a LoRA job on the taste notes (backend/taste_notes.py), with a preset
that fits the model, optionally mixed with a replay set so the model does not forget the rest.

The job is a job like any other (the worker runs it; the Train tab shows it); its spec records which
notes it learned (`notes`) and what was mixed in (`replay_set`, `replay_samples`), and its samples
are written to the notes folder's teach/ (pictures by absolute path: the notes' photos and the replay
set's pictures live in different folders).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from backend.data import load_training_set
from backend.data.library import datasets_root, list_training_sets
from backend.data.llava_format import llava_row
from backend.taste_notes import NOTES_SET, TEACH, NoteError, TasteNotes
from backend.training.samples import write_samples
from backend.training.spec import JobSpec, preset

# What a teaching job changes in the Train tab's presets. The demo model (random weights, tiny) learns
# its samples word for word in demo-cpu's 10 epochs (bench/bench_training.py), a few notes in 10
# steps on a laptop CPU; a real 2B model on a GPU gets about 60 gentler steps over the notes and the
# replay samples, about a minute in all (bench/bench_teach.py).
TEACH_PRESETS = {
    "demo": ("demo-cpu", dict(save_every=0, keep_last=1)),
    "gpu": ("2b-gpu", dict(lora_r=16, lora_alpha=32, learning_rate=2e-4, batch_size=8, grad_accum=1,
                           gradient_checkpointing=False, save_every=0, keep_last=1, device="auto")),
}
TARGET_STEPS = {"gpu": 60}  # a kind not named here keeps its preset's epochs
MAX_REPLAY = 256  # replay samples mixed into a job, at most
NOTE_SHARE = 0.25  # with replay, the notes are repeated until they are about this share of the samples
JOB_NAMES = {"en": "taught: {count} note{s}", "zh": "教学：{count} 条笔记"}


def teach_spec(workdir: Path, model: str, tiny_model: bool, notes: TasteNotes, lang: str = "en",
               seed: int = 0) -> JobSpec:
    """The spec of a teaching job on every note now (NoteError when there is none). `tiny_model`: the
    app's model has random weights (the demo): it gets the demo preset, trained on the CPU."""
    taught = notes.notes()
    if not taught:
        raise NoteError("no_notes", "There are no taste notes yet: correct an answer in Chat first.")
    replay_name = notes.replay()
    replay_rows = _replay_rows(workdir, replay_name, seed)
    repeat = 1
    if replay_rows:
        repeat = max(1, round(NOTE_SHARE * len(replay_rows) / ((1 - NOTE_SHARE) * len(taught))))
    note_rows = [llava_row(notes.record(n), notes.folder) for n in taught]
    for row in note_rows:  # absolute, as the replay set's pictures are: the job reads both
        row["image"] = str(notes.folder / row["image"])
    rows = [dict(row, id=f"{row['id']}-{k}") for k in range(repeat) for row in note_rows] + replay_rows
    data_file = write_samples(rows, notes.folder / TEACH / f"{time.strftime('%Y%m%d-%H%M%S')}-{seed}.json")

    kind = "demo" if tiny_model else "gpu"
    base, changes = TEACH_PRESETS[kind]
    spec = preset(base, model=model, data_file=str(data_file), image_root=str(notes.folder),
                  name=JOB_NAMES.get(lang, JOB_NAMES["en"]).format(count=len(taught),
                                                                   s="" if len(taught) == 1 else "s"),
                  seed=seed,
                  notes=[n.id for n in taught], replay_set=replay_name if replay_rows else "",
                  replay_samples=len(replay_rows), **changes)
    batch = min(spec.batch_size, len(rows))
    if kind not in TARGET_STEPS:
        return spec.with_changes(batch_size=batch)
    steps_per_epoch = math.ceil(math.ceil(len(rows) / batch) / spec.grad_accum)
    return spec.with_changes(batch_size=batch, epochs=max(1, math.ceil(TARGET_STEPS[kind] / steps_per_epoch)))


def replay_choices(workdir: Path) -> list[str]:
    """Saved sets that can be mixed in: every saved set but the notes' own."""
    return [name for name, _, _ in list_training_sets(workdir) if name != NOTES_SET]


def _replay_rows(workdir: Path, name: str, seed: int) -> list[dict]:
    """Up to MAX_REPLAY training samples of the saved set `name`, pictures by absolute path; none when
    no set is chosen or it has gone (the job then learns the notes alone)."""
    if not name:
        return []
    folder = datasets_root(workdir) / name
    try:
        training = load_training_set(folder)
    except ValueError:  # DataError: deleted or damaged since it was chosen
        return []
    rows = [llava_row(record, training.image_root) for record in training.train]
    for row in rows:
        for key in ("image", "images"):
            if isinstance(row.get(key), str):
                row[key] = str(training.image_root / row[key])
            elif isinstance(row.get(key), list):
                row[key] = [str(training.image_root / p) for p in row[key]]
    random.Random(seed).shuffle(rows)
    return rows[:MAX_REPLAY]
