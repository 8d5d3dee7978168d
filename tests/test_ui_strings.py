"""The page's words: every key the UI asks for is there in English and Chinese, with the same
placeholders (a missing Chinese sentence would show English on a zh page; a missing key, an error)."""

from __future__ import annotations

import re
import string
from pathlib import Path

import ui.app  # noqa: F401  (every tab adds its own strings when imported)
from ui.i18n import STRINGS

UI = Path(__file__).resolve().parents[1] / "ui"
ASKED = re.compile(r"""\b(?:i18n|text)\(\s*["']([a-z][a-z0-9_]*)["']""")


def placeholders(sentence: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(sentence) if name}


def test_both_languages_hold_the_same_keys_with_the_same_placeholders() -> None:
    en, zh = STRINGS["en"], STRINGS["zh"]
    assert set(en) == set(zh), (set(en) ^ set(zh))
    differing = [key for key in en if placeholders(en[key]) != placeholders(zh[key])]
    assert differing == []


def test_every_key_the_ui_asks_for_by_name_is_there() -> None:
    asked = {key for path in UI.glob("*.py") for key in ASKED.findall(path.read_text(encoding="utf-8"))}
    assert len(asked) > 100  # the pattern still finds the calls
    assert sorted(asked - set(STRINGS["en"])) == []
