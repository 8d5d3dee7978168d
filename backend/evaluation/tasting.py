"""Blind tasting: a person sees two models' answers to one question about a photo, not told which
model gave which (the sides are shuffled per question), and picks the better one or a tie. Votes are
kept per pair of models in the work folder's tasting.sqlite, one per visitor and question (a second
vote replaces the first), and read out as a win rate with a 95% confidence interval.

Each visitor gets their own queue: the question set's single-photo questions in an order drawn from
their session, so several people tasting at once rarely judge the same question back to back.
"""

from __future__ import annotations

import math
import random
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from backend.data import Record
from backend.data.schema import CONVERSATION, HUMAN, MIVQA, TEXTQA
from backend.evaluation.multiple_choice import question_and_choices

TIE = "tie"
Z95 = 1.96


@dataclass(frozen=True)
class Question:
    record_id: str
    photo: Path
    text: str


def tasting_questions(records: tuple[Record, ...] | list[Record], lang: str) -> list[Question]:
    """The set's questions about one photo each, asked open (no lettered choices): a multiple-choice
    question's stem, or a conversation's first question."""
    found = []
    for record in records:
        if len(record.images) != 1 or record.task in (MIVQA, TEXTQA):
            continue
        if record.task == CONVERSATION:
            asked = next((t.text for t in record.turns if t.role == HUMAN), "")
            text = asked.replace("<image>", "").strip()
        else:
            text = question_and_choices(record, lang)[0]
        if text:
            found.append(Question(record.id, record.images[0], text))
    return found


@dataclass
class TastingSession:
    """One visitor's tasting: their queue and where they are in it, and for the question shown which
    model is on side A. Lives in their gr.State."""

    pair: tuple[str, str]  # the two model keys, as picked (left, right)
    set_name: str
    queue: list[Question]
    position: int = -1
    a_is_first: dict[str, bool] = field(default_factory=dict)  # record id -> pair[0] shown as A

    @classmethod
    def start(cls, pair: tuple[str, str], set_name: str, questions: list[Question], visitor: str) -> TastingSession:
        order = list(questions)
        random.Random(f"{visitor}|{set_name}|{pair}").shuffle(order)
        return cls(pair, set_name, order)

    @property
    def current(self) -> Question | None:
        return self.queue[self.position] if 0 <= self.position < len(self.queue) else None

    def next(self) -> Question | None:
        """The next question, its sides drawn anew; None at the end of the queue."""
        self.position += 1
        question = self.current
        if question is not None:
            self.a_is_first[question.record_id] = random.random() < 0.5
        return question

    def sides(self) -> tuple[str, str]:
        """(model on A, model on B) for the question shown."""
        question = self.current
        first = self.a_is_first.get(question.record_id, True) if question else True
        return self.pair if first else (self.pair[1], self.pair[0])

    def winner(self, choice: str) -> str:
        """The model key a vote for "A", "B" or "tie" means, for the question shown."""
        if choice == TIE:
            return TIE
        return self.sides()[0 if choice == "A" else 1]


@dataclass(frozen=True)
class Tally:
    pair: tuple[str, str]  # (first, second) as asked
    first_wins: int
    second_wins: int
    ties: int

    @property
    def votes(self) -> int:
        return self.first_wins + self.second_wins + self.ties

    def second_win_rate(self) -> tuple[float, float, float]:
        """The second model's win rate, ties counting half, with a 95% Wilson interval; (0, 0, 1)
        without votes."""
        n = self.votes
        if not n:
            return 0.0, 0.0, 1.0
        p = (self.second_wins + self.ties / 2) / n
        centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
        half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
        return p, max(0.0, centre - half), min(1.0, centre + half)


class Votes:
    """The votes of one work folder (tasting.sqlite), shared by every visitor."""

    def __init__(self, workdir: Path) -> None:
        self.path = Path(workdir) / "tasting.sqlite"
        self._lock = threading.Lock()
        self._execute("CREATE TABLE IF NOT EXISTS votes (pair TEXT NOT NULL, record TEXT NOT NULL, "
                      "voter TEXT NOT NULL, winner TEXT NOT NULL, time REAL NOT NULL, "
                      "PRIMARY KEY (pair, record, voter))")

    def _execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, closing(sqlite3.connect(self.path, timeout=30)) as conn, conn:
            return conn.execute(sql, params).fetchall()

    def vote(self, pair: tuple[str, str], record_id: str, voter: str, winner: str) -> None:
        """One visitor's verdict on one question: `winner` is a model key of the pair, or TIE. A
        second vote on the same question replaces the first."""
        if winner != TIE and winner not in pair:
            raise ValueError(f"{winner!r} is not one of the models tasted")
        self._execute("INSERT INTO votes (pair, record, voter, winner, time) VALUES (?, ?, ?, ?, ?) "
                      "ON CONFLICT (pair, record, voter) DO UPDATE SET winner = excluded.winner, "
                      "time = excluded.time", (pair_key(pair), record_id, voter, winner, time.time()))

    def tally(self, pair: tuple[str, str]) -> Tally:
        counts = dict(self._execute("SELECT winner, COUNT(*) FROM votes WHERE pair = ? GROUP BY winner",
                                    (pair_key(pair),)))
        return Tally(pair, counts.get(pair[0], 0), counts.get(pair[1], 0), counts.get(TIE, 0))


def pair_key(pair: tuple[str, str]) -> str:
    """The same key whichever side each model was picked on."""
    return "|".join(sorted(pair))
