"""The transformers engine: streaming, stopping, and one model shared by many sessions."""

from __future__ import annotations

import threading

import pytest

from backend.inference.engine import Cancel, GenerationSettings, Turn
from backend.inference.transformers_engine import TransformersEngine
from backend.models.loading import load, resolve
from tests.conftest import EXAMPLES

PHOTO = str(EXAMPLES / "images" / "dazhaxie-0.jpg")


@pytest.fixture(scope="module")
def engine(demo_workdir):
    from backend.models.demo import ensure_demo_model

    return TransformersEngine(load(resolve(ensure_demo_model(demo_workdir).location)))


def test_the_answer_arrives_in_pieces(engine):
    pieces = list(engine.stream([Turn("user", "这是什么菜？", (PHOTO,))], GenerationSettings(max_new_tokens=24)))
    assert len(pieces) > 1


def test_cancel_stops_generation_early(engine):
    cancel = Cancel()
    settings = GenerationSettings(max_new_tokens=400)
    stream = engine.stream([Turn("user", "这是什么菜？", (PHOTO,))], settings, cancel)
    received = [next(stream) for _ in range(3)]
    cancel.set()
    rest = list(stream)
    full = list(engine.stream([Turn("user", "这是什么菜？", (PHOTO,))], settings))
    assert len(received) + len(rest) < len(full)


def test_sessions_in_parallel_get_the_answers_they_would_get_alone(engine):
    settings = GenerationSettings(max_new_tokens=20)
    questions = [[Turn("user", q, (PHOTO,))] for q in ("这是什么菜？", "How does it taste?", "在哪里吃？")]
    alone = ["".join(engine.stream(turns, settings)) for turns in questions]
    together: dict[int, str] = {}

    def ask(i: int) -> None:
        together[i] = "".join(engine.stream(questions[i], settings))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [together[i] for i in range(len(questions))] == alone


def test_a_conversation_must_end_with_the_user(engine):
    with pytest.raises(ValueError):
        list(engine.stream([Turn("assistant", "hi")], GenerationSettings()))


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0)])
def test_impossible_generation_settings_are_refused(bad):
    with pytest.raises(ValueError):
        GenerationSettings(**bad)
