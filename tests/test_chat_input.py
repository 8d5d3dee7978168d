"""The checks a chat message passes before the model sees it."""

from __future__ import annotations

import pytest

from backend.chat import MAX_IMAGES_PER_MESSAGE, ChatInputError, ChatSession, user_turn
from backend.images import ImageError
from tests.conftest import EXAMPLES

PHOTO = str(EXAMPLES / "images" / "jiaozi-0.jpg")


def test_an_empty_message_is_refused_in_the_visitors_language():
    from ui.problems import say

    with pytest.raises(ChatInputError, match="Type a question") as refused:
        user_turn("   ", [], 10_000, "zh")
    assert say(refused.value, "zh") == "请先输入问题或拖入一张菜品照片。"
    assert say(refused.value, "en") == "Type a question or drop a dish photo first."


def test_a_photo_alone_gets_a_default_question():
    turn = user_turn("", [PHOTO], 10_000, "zh")
    assert turn.text == "这是什么菜？" and turn.images == (PHOTO,)


def test_a_broken_photo_is_caught_before_the_model(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageError):
        user_turn("这是什么菜？", [PHOTO, str(bad)], 10_000, "zh")


def test_too_many_photos_and_too_long_a_message_are_refused_in_both_languages():
    from backend.chat import MAX_MESSAGE_CHARS
    from ui.problems import say

    with pytest.raises(ChatInputError, match="At most") as refused:
        user_turn("?", [PHOTO] * (MAX_IMAGES_PER_MESSAGE + 1), 10_000, "en")
    assert say(refused.value, "zh") == f"每条消息最多 {MAX_IMAGES_PER_MESSAGE} 张图片。"
    with pytest.raises(ChatInputError, match="characters long") as refused:
        user_turn("饺" * (MAX_MESSAGE_CHARS + 1), [], 10_000, "zh")
    assert say(refused.value, "zh") == f"这条消息有 {MAX_MESSAGE_CHARS + 1} 个字符，上限是 {MAX_MESSAGE_CHARS} 个。"


def test_clearing_a_session_cancels_its_answer():
    from backend.inference.engine import Cancel

    session = ChatSession()
    session.cancel = Cancel()
    session.turns.append(user_turn("hi", [], 10_000, "en"))
    session.clear()
    assert session.turns == [] and session.cancel.is_set
