"""Taste notes: the corrections a person gives in Chat ("Correct it"), kept as a training set.

A note is a photo, the question asked about it and the right answer. The notes live in the work
folder as a saved training set like any other, so the Dataset tab lists it and the Train tab can
train on it; Chat's "Train on my notes" does so in one click (backend/training/teach.py).

    <workdir>/datasets/taste-notes/
        notes.json            the notes themselves: the source the set's files are written from
        photos/<sha1>.<ext>   each photo, copied in by content (Gradio's uploads are wiped at restart)
        split.json, train.json, ...   the saved-set files (backend/data/split.py), rewritten on each change
        teach/<job>.json      each teaching job's samples: the notes it used, and any replay samples

Every change takes a lock and rewrites the files through temporary names, so two visitors adding
notes at once keep both, and a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from backend.chat import MAX_MESSAGE_CHARS
from backend.data.data_files import write_json_atomic
from backend.data.library import datasets_root
from backend.data.schema import GPT, HUMAN, IMAGE_PLACEHOLDER, SOURCE_OWN, Record, Turn, conversation_record
from backend.data.split import MANIFEST, build_training_set
from backend.images import open_image
from backend.inference.engine import Turn as ChatTurn
from backend.problems import ProblemError

log = logging.getLogger(__name__)

NOTES_SET = "taste-notes"
NOTES_FILE = "notes.json"
PHOTOS = "photos"
TEACH = "teach"
SETTINGS_FILE = "settings.json"  # {"replay": "<a saved set's name>"}: chosen once, kept for every job
MAX_ANSWER_CHARS = 2000

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


class NoteError(ProblemError, ValueError):
    """A correction or note change that cannot be made, with the reason in plain words."""


@dataclass(frozen=True)
class Note:
    id: str
    photo: str  # relative to the notes folder: photos/<sha1>.<ext>
    question: str
    answer: str
    created: float
    dish: str = ""  # when the answer was given as a dish and a cuisine
    cuisine: str = ""


@dataclass(frozen=True)
class Correction:
    """What "Correct it" corrects: the photo and question of an answered turn, and that answer."""

    photo: str  # a path of the conversation's (an upload, or a bundled example)
    question: str
    answer: str


def correction_target(turns: list[ChatTurn], sees_pictures: bool = True) -> Correction:
    """The newest answer of a conversation, with the photo and question of the turn it answered.
    NoteError when there is no answer yet, when that turn showed no photo, or when the model the
    app serves reads no pictures."""
    if not sees_pictures:
        raise NoteError("note_text_only_model", "The model this app serves reads no pictures, so a correction "
                        "about a photo cannot teach it anything.")
    answered = next((i for i in range(len(turns) - 1, 0, -1) if turns[i].role == "assistant"), None)
    if answered is None or turns[answered - 1].role != "user":
        raise NoteError("note_no_answer", "There is no answer to correct yet: ask about a dish photo first.")
    asked = turns[answered - 1]
    if not asked.images:
        raise NoteError("note_no_photo", "The question this answer replies to came without a photo; a taste "
                        "note needs the photo it is about. Ask again with the photo, then correct the answer.")
    return Correction(asked.images[-1], asked.text, turns[answered].text)


def dish_answer(dish: str, cuisine: str, lang: str) -> str:
    """An answer made of a dish name and a cuisine, as the bundled dishes teach it."""
    dish, cuisine = dish.strip(), cuisine.strip()
    if lang == "zh":
        return f"这是{dish}，属于{cuisine}。" if cuisine else f"这是{dish}。"
    return f"This is {dish}, a {cuisine} dish." if cuisine else f"This is {dish}."


class TasteNotes:
    """The taste notes of one work folder."""

    def __init__(self, workdir: Path) -> None:
        self.folder = datasets_root(workdir) / NOTES_SET
        with _LOCKS_LOCK:
            self._lock = _LOCKS.setdefault(self.folder, threading.Lock())

    # ---- reading ----

    def notes(self) -> list[Note]:
        """Every note, oldest first."""
        try:
            rows = json.loads((self.folder / NOTES_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as err:
            log.warning("the taste notes in %s cannot be read: %s", self.folder, err)
            return []
        return [Note(**row) for row in rows if isinstance(row, dict)]

    def find(self, note_id: str) -> Note:
        for note in self.notes():
            if note.id == note_id:
                return note
        raise NoteError("note_gone", "There is no taste note {note} (it may have been removed).", note=note_id)

    def photo_path(self, note: Note) -> Path:
        return self.folder / note.photo

    def replay(self) -> str:
        """The saved set chosen to be mixed into every teaching job ("" for none)."""
        try:
            return str(json.loads((self.folder / SETTINGS_FILE).read_text(encoding="utf-8")).get("replay", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    # ---- changing ----

    def add(self, photo: str | Path, question: str, answer: str, dish: str = "", cuisine: str = "") -> Note:
        """A new note: the photo copied in, the answer checked. NoteError with a sentence otherwise."""
        answer = _checked_answer(answer)
        open_image(photo, 50_000_000)  # a broken or missing photo is an ImageError, said as such
        with self._lock:
            stored = self._copy_photo(Path(photo))
            note = Note(id=uuid.uuid4().hex[:8], photo=stored, question=question.strip() or "?", answer=answer,
                        created=time.time(), dish=dish.strip(), cuisine=cuisine.strip())
            self._write([*self.notes(), note])
        log.info("taste note %s added: %r", note.id, answer[:60])
        return note

    def edit(self, note_id: str, answer: str) -> Note:
        answer = _checked_answer(answer)
        with self._lock:
            notes = self.notes()
            index = next((i for i, n in enumerate(notes) if n.id == note_id), None)
            if index is None:
                raise NoteError("note_gone", "There is no taste note {note} (it may have been removed).",
                                note=note_id)
            notes[index] = replace(notes[index], answer=answer, dish="", cuisine="")
            self._write(notes)
        return notes[index]

    def remove(self, note_id: str) -> None:
        with self._lock:
            notes = self.notes()
            kept = [n for n in notes if n.id != note_id]
            if len(kept) == len(notes):
                raise NoteError("note_gone", "There is no taste note {note} (it may have been removed).",
                                note=note_id)
            self._write(kept)
            self._prune_photos(kept)

    def choose_replay(self, set_name: str) -> None:
        with self._lock:
            write_json_atomic(self.folder / SETTINGS_FILE, {"replay": set_name or ""})

    # ---- the files ----

    def _copy_photo(self, photo: Path) -> str:
        digest = hashlib.sha1(photo.read_bytes()).hexdigest()[:20]
        name = f"{PHOTOS}/{digest}{photo.suffix.lower() or '.jpg'}"
        target = self.folder / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            shutil.copyfile(photo, partial)
            partial.replace(target)
        return name

    def _write(self, notes: list[Note]) -> None:
        """notes.json, then the saved-set files made from it (none while there is no note)."""
        write_json_atomic(self.folder / NOTES_FILE, [asdict(n) for n in notes])
        if not notes:
            (self.folder / MANIFEST).unlink(missing_ok=True)  # an empty set is no set
            return
        # pictures relative to the folder itself, so its train.json reads as any LLaVA file does
        build_training_set([self.record(n) for n in notes], self.folder, heldout_ratio=0.0, tasks=(),
                           image_root=self.folder)

    def record(self, note: Note) -> Record:
        """A note as a conversation record: the photo and question, then the answer to learn."""
        turns = (Turn(HUMAN, f"{IMAGE_PLACEHOLDER}\n{note.question}"), Turn(GPT, note.answer))
        return conversation_record(note.id, turns, (self.photo_path(note).resolve(),), source=SOURCE_OWN,
                                   dish_id=note.dish or f"photo:{Path(note.photo).stem}", food_name=note.dish,
                                   cuisine=note.cuisine)

    def _prune_photos(self, kept: list[Note]) -> None:
        """Photos no note and no teaching job's samples name any more."""
        used = {n.photo for n in kept}
        for samples in (self.folder / TEACH).glob("*.json"):
            used.update(f"{PHOTOS}/{Path(p).name}" for p in _image_paths(samples))
        for photo in (self.folder / PHOTOS).glob("*"):
            if f"{PHOTOS}/{photo.name}" not in used:
                photo.unlink(missing_ok=True)


def _checked_answer(answer: str) -> str:
    answer = (answer or "").strip()
    if not answer:
        raise NoteError("note_empty", "Write the right answer first (or give the dish and its cuisine).")
    if len(answer) > min(MAX_ANSWER_CHARS, MAX_MESSAGE_CHARS):
        raise NoteError("note_too_long", "The answer is {length} characters long; keep a taste note under "
                        "{limit}.", length=len(answer), limit=MAX_ANSWER_CHARS)
    return answer


def _image_paths(samples_file: Path) -> list[str]:
    try:
        rows = json.loads(samples_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found = []
    for row in rows if isinstance(rows, list) else []:
        paths = row.get("images", row.get("image")) if isinstance(row, dict) else None
        found.extend([paths] if isinstance(paths, str) else paths or [])
    return found
