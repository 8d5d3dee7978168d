"""The page's words (ui/locales/en.toml and zh.toml): every key the UI asks for is there in English
and Chinese, with the same placeholders (a missing Chinese sentence would show English on a zh page;
a missing key, an error)."""

from __future__ import annotations

import re
import string
from pathlib import Path

from backend.training.job_form import FIELDS
from ui.i18n import STRINGS
from ui.train import WITH_INFO

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
    # the Train form's settings, labelled by name (tr_<field>, tr_<field>_info)
    labels = {f"tr_{field}" for field in FIELDS} | {f"tr_{field}_info" for field in WITH_INFO}
    assert sorted(labels - set(STRINGS["en"])) == []


def test_a_chinese_page_names_tasks_and_question_types_in_the_score_tables():
    from backend.evaluation.scoring import ScoredQuestion, ScoreRun
    from ui.compare_scores import breakdown_rows

    run = ScoreRun(model="base", adapter=None, split="bundled", lang="zh", questions=[
        ScoredQuestion(record_id="a", task="sivqa", question_type="main-ingredient", cuisine="川菜", question="?",
                       right="A", picked="A", reply="A"),
        ScoredQuestion(record_id="b", task="textqa", question_type="a_new_type", cuisine="粤菜", question="?",
                       right="B", picked="", reply="…")])
    words = dict(total="全部", unparsed="{count} 题无法解析")
    assert [row[0] for row in breakdown_rows([run], "task", words, "zh")] == ["单图", "纯文本", "全部"]
    # a type the page has no word for keeps its label
    assert [row[0] for row in breakdown_rows([run], "question_type", words, "zh")] == ["a_new_type", "主料", "全部"]
    # an English page says a label in words
    assert [row[0] for row in breakdown_rows([run], "question_type", words, "en")][:2] == ["a new type",
                                                                                          "main ingredient"]


def test_a_reason_key_means_one_sentence_across_the_backend() -> None:
    """Two reasons under one key would share one Chinese sentence, so one of them would be said wrong."""
    import ast
    from collections import defaultdict

    import backend

    sentences: dict[str, set[str]] = defaultdict(set)
    for path in Path(backend.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and len(node.args) >= 2):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            key, english = node.args[0], node.args[1]
            if (name.endswith(("Error", "Problem", "Refused", "Incomplete", "DataSets")) or name == "Problem") \
                    and isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.isidentifier() \
                    and isinstance(english, ast.Constant) and isinstance(english.value, str) and " " in english.value:
                sentences[key.value].add(english.value)
    assert len(sentences) > 100  # the scan finds the backend's reasons
    assert {k: v for k, v in sentences.items() if len(v) > 1} == {}
