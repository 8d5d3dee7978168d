"""Blind tasting's votes: kept per pair and per visitor, a second vote replacing the first, the sides
hidden and shuffled, and the win rate with its interval."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.data import read_bundled_sample
from backend.evaluation.tasting import TIE, Tally, TastingSession, Votes, tasting_questions


def test_a_second_vote_on_a_question_replaces_the_first(tmp_path: Path):
    votes = Votes(tmp_path)
    pair = ("base", "job:final")
    votes.vote(pair, "q1", "visitor-1", "base")
    votes.vote(pair, "q1", "visitor-1", "job:final")  # changed their mind: replaced, not counted twice
    votes.vote(pair, "q1", "visitor-2", TIE)
    votes.vote(pair, "q2", "visitor-1", "job:final")
    assert Votes(tmp_path).tally(pair) == Tally(pair, 0, 2, 1)
    # the same pair picked the other way round is the same tasting
    assert Votes(tmp_path).tally(("job:final", "base")) == Tally(("job:final", "base"), 2, 0, 1)
    with pytest.raises(ValueError):
        votes.vote(pair, "q3", "visitor-1", "another:model")


def test_the_win_rate_counts_a_tie_as_half_and_its_interval_holds_it():
    rate, low, high = Tally(("a", "b"), 2, 6, 2).second_win_rate()
    assert rate == pytest.approx(0.7) and low < 0.7 < high and low >= 0 and high <= 1
    assert Tally(("a", "b"), 0, 0, 0).second_win_rate() == (0.0, 0.0, 1.0)
    narrow = Tally(("a", "b"), 20, 60, 20).second_win_rate()
    assert narrow[2] - narrow[1] < high - low  # more votes, a narrower interval


def test_a_visitors_queue_asks_photo_questions_open_with_sides_drawn_per_question():
    records = read_bundled_sample().records
    queue = tasting_questions(records, "en")
    assert queue and all(q.photo.is_file() and "(A)" not in q.text for q in queue)
    one = TastingSession.start(("base", "tuned"), "bundled", queue, "visitor-1")
    other = TastingSession.start(("base", "tuned"), "bundled", queue, "visitor-2")
    assert [q.record_id for q in one.queue] != [q.record_id for q in other.queue]  # their own orders
    seen_first = set()
    for _ in range(len(queue)):
        one.next()
        a, b = one.sides()
        assert {a, b} == {"base", "tuned"} and one.winner("A") == a and one.winner("B") == b
        assert one.winner(TIE) == TIE
        seen_first.add(a)
    assert seen_first == {"base", "tuned"}  # each model shows as A on some question
    assert one.next() is None  # the end of the queue
