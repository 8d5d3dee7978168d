"""Training samples in the LLaVA / XTuner conversation format, read into chat-template messages.

The contract with backend/data (which exports what the Dataset tab prepares) is a JSON list:

    [{"id": "0001", "image": "dishes/guobaorou.jpg",            # or "images": [...], or neither
      "conversations": [{"from": "human", "value": "<image>\\n这是什么菜？"},
                        {"from": "gpt", "value": "这是锅包肉，东北菜。"},
                        {"from": "human", "value": "它是什么味道？"},
                        {"from": "gpt", "value": "酸甜酥脆。"}]}]

Image paths are relative to an image folder. Each `<image>` marks where a picture goes; a sample
with pictures and no marker gets them at the start of its first question. Every "gpt" turn is an
answer the model learns; turns need not alternate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

IMAGE_PLACEHOLDER = "<image>"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
         "system": "system"}


class SampleError(ValueError):
    """A sample that cannot be trained on, with the reason in plain words."""


@dataclass(frozen=True)
class Sample:
    id: str
    messages: list[dict]  # chat-template messages; pictures appear as {"type": "image"} parts
    images: tuple[Path, ...]  # in the order their parts appear

    @property
    def answers(self) -> list[str]:
        return [m["content"][0]["text"] for m in self.messages if m["role"] == "assistant"]


def sample_from_record(record: dict, image_root: Path, index: int = 0) -> Sample:
    if not isinstance(record, dict):
        raise SampleError(f"sample {index} is not an object with conversations")
    sample_id = str(record.get("id", index))
    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise SampleError(f"sample {sample_id} has no conversations")

    paths = record.get("images", record.get("image")) or []
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise SampleError(f"sample {sample_id}: image must be a path or a list of paths")
    images = tuple(Path(image_root) / p for p in paths)
    for image in images:
        if not image.is_file():
            raise SampleError(f"sample {sample_id}: picture {image} was not found")

    messages: list[dict] = []
    placeholders = 0
    for turn in conversations:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise SampleError(f"sample {sample_id}: every turn needs a text 'value'")
        role = ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise SampleError(f"sample {sample_id}: unknown speaker {turn.get('from')!r} "
                              "(expected human, gpt or system)")
        text = turn["value"]
        if role == "assistant":
            if IMAGE_PLACEHOLDER in text:
                raise SampleError(f"sample {sample_id}: an answer cannot contain a picture")
            messages.append({"role": role, "content": [{"type": "text", "text": text.strip()}]})
            continue
        content, count = _split_placeholders(text)
        placeholders += count
        messages.append({"role": role, "content": content})

    if placeholders == 0 and images:
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            raise SampleError(f"sample {sample_id} has pictures but no question to put them in")
        first_user["content"][:0] = [{"type": "image"} for _ in images]
    elif placeholders != len(images):
        raise SampleError(f"sample {sample_id} has {placeholders} <image> markers but {len(images)} pictures")

    # A question left without an answer at the end teaches nothing: drop it.
    while messages and messages[-1]["role"] != "assistant":
        messages.pop()
    if not any(m["role"] == "assistant" and m["content"][0]["text"] for m in messages):
        raise SampleError(f"sample {sample_id} has no answer to learn")
    kept_pictures = sum(part.get("type") == "image" for m in messages for part in m["content"])
    return Sample(sample_id, messages, images[:kept_pictures])


def _split_placeholders(text: str) -> tuple[list[dict], int]:
    """'<image>\\n问题' -> [image part, text part]. The newline LLaVA puts after the marker is dropped:
    each chat template decides itself what separates a picture from the text."""
    parts: list[dict] = []
    pieces = text.split(IMAGE_PLACEHOLDER)
    for i, piece in enumerate(pieces):
        if i > 0:
            parts.append({"type": "image"})
            piece = piece[1:] if piece.startswith("\n") else piece
        if piece.strip():
            parts.append({"type": "text", "text": piece.strip()})
    return parts, len(pieces) - 1


def read_samples(data_file: Path, image_root: Path) -> tuple[list[Sample], list[str]]:
    """All valid samples of `data_file`, and one sentence for each sample that is not."""
    data_file = Path(data_file)
    try:
        records = json.loads(data_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SampleError(f"{data_file.name} could not be read as JSON: {err}") from None
    if not isinstance(records, list):
        raise SampleError(f"{data_file.name} must hold a JSON list of samples")
    samples, problems = [], []
    for index, record in enumerate(records):
        try:
            samples.append(sample_from_record(record, image_root, index))
        except SampleError as err:
            problems.append(str(err))
    return samples, problems


def write_samples(records: list[dict], path: Path) -> Path:
    """Write LLaVA-format records (temp name, then rename: a reader never sees half a file). A file
    that already holds exactly these records is left as it is (no write: a full disk does not stop a
    demo job whose samples are there), and a failed write leaves no temporary file."""
    path = Path(path)
    text = json.dumps(records, ensure_ascii=False, indent=1)
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
