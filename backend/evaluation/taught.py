"""What a teaching job changed, photo by photo: the base model and the job's checkpoint asked the
same question about the notes it learned ("trained on") and about photos of other dishes it never
saw ("held out"), so a person sees whether it learned the notes and what it does elsewhere.
Compare shows it under the side-by-side answers on the note just taught (ui/compare.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from backend.data import DataError, load_training_set
from backend.data.library import datasets_root
from backend.inference.engine import Engine, GenerationSettings, Turn
from backend.quick_examples import bundled_examples
from backend.taste_notes import Note, NoteError, TasteNotes
from backend.training.spec import JobSpec

TRAINED, HELD_OUT = "trained", "held_out"
HELD_OUT_PHOTOS = 4  # photos of other dishes asked about, at most
ANSWER_SETTINGS = GenerationSettings(max_new_tokens=64, temperature=0.0)


@dataclass(frozen=True)
class Probe:
    """One photo to ask about, and why it is in the table."""

    photo: Path
    question: str
    label: str  # TRAINED or HELD_OUT
    expected: str = ""  # the note's answer, for a photo the job trained on


@dataclass(frozen=True)
class Answered:
    probe: Probe
    base: str
    tuned: str


def taught_notes(spec: JobSpec, notes: TasteNotes) -> list[Note]:
    """The notes a teaching job learned that are still there, in the order they were written."""
    kept = {note.id: note for note in notes.notes()}
    return [kept[note_id] for note_id in spec.notes if note_id in kept]


def target_note(spec: JobSpec, notes: TasteNotes) -> Note:
    """The note Compare opens a teaching job on: the newest one it learned."""
    learned = taught_notes(spec, notes)
    if not learned:
        raise NoteError("taught_notes_gone", "The notes this job learned have all been removed since, so there "
                        "is no photo to compare it on.")
    return learned[-1]


def probes(spec: JobSpec, notes: TasteNotes, workdir: Path) -> list[Probe]:
    """The job's other notes (trained on), then up to HELD_OUT_PHOTOS photos of dishes it has no
    note about (held out): from the replay set's held-out part when it had one, else from the
    bundled dishes. Each is asked the target note's question."""
    learned = taught_notes(spec, notes)
    if not learned:
        return []
    target = learned[-1]
    found = [Probe(notes.photo_path(n), n.question, TRAINED, n.answer) for n in learned[:-1]]
    found += [Probe(photo, target.question, HELD_OUT) for photo in _held_out_photos(spec, notes, learned, workdir)]
    return found


def answer_both(engine: Engine, probes_: list[Probe], adapter: str | None) -> list[Answered]:
    """Each probe asked of the base model and of the checkpoint, one batch each."""
    conversations = [[Turn("user", p.question, (str(p.photo),))] for p in probes_]
    if not conversations:
        return []
    base = engine.generate_batch(conversations, ANSWER_SETTINGS, None)
    tuned = engine.generate_batch(conversations, ANSWER_SETTINGS, adapter)
    return [Answered(p, b.strip(), t.strip()) for p, b, t in zip(probes_, base, tuned)]


def _held_out_photos(spec: JobSpec, notes: TasteNotes, learned: list[Note], workdir: Path) -> list[Path]:
    if spec.replay_set:
        try:
            training = load_training_set(datasets_root(workdir) / spec.replay_set)
        except DataError:
            training = None
        if training is not None:
            held = [r.images[0] for r in training.heldout_questions or training.heldout if len(r.images) == 1]
            if held:
                return list(dict.fromkeys(held))[:HELD_OUT_PHOTOS]
    # The bundled dishes: one photo each of dishes no note shows (a note's photo may be a bundled one).
    noted = {Path(n.photo).stem for n in learned}
    noted_dishes = {n.dish for n in learned if n.dish}
    examples = bundled_examples()
    for example in examples:  # each bundled dish has several photos: <dish id>-<n>.jpg
        dish_id = example.image.stem.rsplit("-", 1)[0]
        if any(_photo_key(photo) in noted for photo in example.image.parent.glob(f"{dish_id}-*.jpg")):
            noted_dishes.update({example.dish_zh, example.dish_en})
    others = [ex.image for ex in examples if ex.dish_zh not in noted_dishes and ex.dish_en not in noted_dishes]
    return others[:HELD_OUT_PHOTOS]


def _photo_key(path: Path) -> str:
    """How the notes folder names a copy of this photo (taste_notes.TasteNotes._copy_photo)."""
    return hashlib.sha1(path.read_bytes()).hexdigest()[:20]
