"""Text is text (issue 32): names, paths, errors and model strings reach Markdown, HTML toasts, the log,
score files and CSV exports as the characters they are. The same in a real browser:
tests/test_browser_hostile_names.py."""

from __future__ import annotations

import ast
import csv
import io
import logging
from pathlib import Path

import pytest

from backend.data import DataError
from backend.data.library import check_job_name
from backend.evaluation.scoring import ScoredQuestion, ScoreRun, file_part, save, to_csv
from backend.markdown_text import Markdown, as_text
from backend.training.spec import JobSpec
from ui.i18n import markdown

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ('<img src="http://evil.example/x.png" onerror="alert(1)"> [click](http://evil.example/a) '
           '![pic](http://evil.example/p.png) **bold** _em_ `code` www.evil.example me@evil.example $$x$$ ~~s~~')


def test_markdown_constructs_that_make_elements_are_escaped():
    shown = as_text(HOSTILE)
    assert isinstance(shown, Markdown)
    assert "<img" not in shown and "&lt;img" in shown
    for made in ("[click](", "![pic](", "**bold**", "_em_", "`code`", "www.evil", "me@evil", "$$", "~~",
                 "http://"):
        assert made not in shown, made
    # Every escape is a backslash before ASCII punctuation (or an HTML entity), so a Markdown renderer
    # shows the original characters: undoing the escapes gives the text back.
    import html
    import re
    assert html.unescape(re.sub(r"\\(.)", r"\1", shown)) == HOSTILE


def test_line_start_markers_are_escaped_but_plain_numbers_and_names_are_not():
    assert as_text("- a\n1. b\n---\n+ c") == "\\- a\n1\\. b\n\\---\n\\+ c"
    for plain in ("6.6 MB", "-0.5", "snake_case_name", "/tmp/test_a_b0/FoodieQA", "川菜-练习", "loss 0.25"):
        assert as_text(plain) == plain


def test_escaped_text_is_not_escaped_twice_and_code_spans_keep_their_text():
    once = as_text("a*b")
    assert as_text(once) == once == "a\\*b"
    assert as_text("/tmp/x`y", "code") == "/tmp/xˋy"
    assert as_text("<b>&", "html") == "&lt;b&gt;&amp;"


def test_a_page_sentence_escapes_its_values_by_where_they_stand():
    saved = markdown("ds_saved", "en", name="[x](http://evil)", train=1, train_dishes=1, heldout=0, heldout_dishes=0,
                     folder=Path("/w/datasets/a_b`c"), together="dish")
    assert "**\\[x\\](http:\\/\\/evil)**" in saved  # in bold, escaped
    assert "`/w/datasets/a_bˋc`" in saved  # in a code span: as it is, but for the backtick
    notice = markdown("tuned_notice", "en", base="demo", adapter="<img src=x> · final")
    assert "&lt;img src=x&gt; · final" in notice and "<img" not in notice


def test_job_names_follow_the_rules_of_set_names():
    assert check_job_name("  川菜-练习_2.v1 ") == "川菜-练习_2.v1"
    assert check_job_name("") == ""
    for bad in ("a/b", "has space", "<img src=x>", "[x](y)", "line\nbreak", ".hidden", "-dash"):
        with pytest.raises(DataError, match="cannot be a job's name"):
            check_job_name(bad)
    with pytest.raises(DataError, match="65 characters long; keep it to 64"):
        check_job_name("x" * 65)


def test_any_spec_refuses_a_name_with_a_slash_or_a_line_break(tmp_path):
    for bad in ("a/b", "two\nlines", "x" * 65):
        assert "job_name" in {p.key for p in JobSpec(name=bad).problems(check_files=False)}
    for fine in ("demo: bundled dishes", "演示：内置菜品", "job 1"):
        assert "job_name" not in {p.key for p in JobSpec(name=fine).problems(check_files=False)}


def test_the_log_quotes_a_job_name_so_it_cannot_forge_lines(tmp_path, demo_workdir, caplog):
    from backend.training.demo_data import demo_spec
    from backend.training.jobs import JobStore

    store = JobStore(tmp_path / "runs")
    with caplog.at_level(logging.INFO, logger="backend.training.jobs"):
        store.submit(demo_spec(demo_workdir, name="fine: 12:00:01 E error: forged"))
    [line] = [r.getMessage() for r in caplog.records if "queued job" in r.getMessage()]
    assert line.endswith("('fine: 12:00:01 E error: forged')")


def test_score_csv_cells_that_start_like_a_formula_are_shown_as_text():
    run = ScoreRun("=cmd|' /C calc'!A0", None, "held-out", "zh", questions=[
        ScoredQuestion("=1+1", "sivqa", "t", "川菜", "=HYPERLINK(\"http://evil\")", "A", "A", "@SUM(A1)"),
        ScoredQuestion("q2", "sivqa", "t", "川菜", "+1 or -1?", "B", "", "-2")])
    rows = list(csv.reader(io.StringIO(to_csv([run]))))
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]
    assert rows[1][:2] == ["'=1+1", "'=HYPERLINK(\"http://evil\")"] and rows[1][4] == "'@SUM(A1)"
    assert rows[0][3] == "'=cmd|' /C calc'!A0 picked"


def test_a_score_file_is_named_safely_whatever_the_model_is_called(tmp_path):
    run = ScoreRun("../../escape/\nname · final", "a", "held-out", "zh")
    path = save(run, tmp_path)
    assert path.parent == tmp_path and "\n" not in path.name and "/" not in path.name[len("score-"):]
    assert not list(tmp_path.glob("*.partial"))
    assert file_part("川菜 · final") == "川菜_final"


def test_ui_raises_toasts_only_through_the_escaping_helpers():
    offenders = []
    for path in (ROOT / "ui").glob("*.py"):
        if path.name == "toasts.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("Warning", "Info", "Error", "Success")
                    and getattr(node.func.value, "id", "") == "gr"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_an_answer_keeps_its_formatting_but_makes_no_link_picture_or_html():
    shown = as_text(HOSTILE, "answer")
    assert "<img" not in shown and "&lt;img" in shown
    for made in ("[click](", "![pic](", "http://", "www.evil", "me@evil"):
        assert made not in shown, made
    for kept in ("**bold**", "_em_", "`code`"):
        assert kept in shown, kept
    assert as_text("1. **Mapo tofu**\n2. Kung pao", "answer") == "1. **Mapo tofu**\n2. Kung pao"
