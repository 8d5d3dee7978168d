"""Text from people, datasets, models and the disk (a job's name, a path, an error, a model's answer),
put into a view that renders markup, as the characters it is.

One function, `as_text`, for the four places such text lands:
- "markdown" (the default): Gradio's Markdown and Chatbot. HTML is escaped (so "<img onerror=...>"
  shows as typed instead of being dropped by Gradio's sanitiser, or run), and so is whatever
  Markdown would turn into an element: links and pictures ([x](url), ![x](url)), bare URLs and
  e-mail addresses that GFM links by itself, emphasis, code, tables, strikethrough, headings, list
  and quote markers at the start of a line, and LaTeX. A picture from a remote server is a request
  the visitor never chose; a link is a trap.
- "answer": a model's answer in a Chatbot. Models answer in Markdown (lists, **bold**, code), so
  that formatting stays; HTML is escaped and links, pictures, bare URLs and e-mail addresses are
  taken apart as in "markdown", because a model repeats what its prompt or training data said.
- "html": Gradio's toasts (gr.Info, gr.Warning, gr.Error), which render their message as HTML.
- "code": a value inside a code span of a page's sentence ("in `{folder}`"): a code span shows its
  content as is, so only a backtick (which would end the span) is replaced, by the look-alike ˋ.

A value escaped for Markdown comes back as `Markdown`, which as_text passes on unchanged, so
sentences can be built from escaped parts without escaping twice (ui/i18n.py: markdown()).
"""

from __future__ import annotations

import html
import re

# Characters that start Markdown (CommonMark + GFM) inline elements wherever they stand. "_" only
# where it can open or close emphasis: between two letters it is plain text ("snake_case", and
# paths such as test_a_folder0), which keeps such names as they were.
_INLINE = re.compile(r"[\\`*\[\]|~$@#]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# In an answer only what makes a link or a picture: "[x](url)", "![x](url)", "[x][ref]", "a@b".
_LINKING = re.compile(r"[\\\[\]@]")
# What GFM turns into a link by itself: "http://x", "www.x".
_AUTOLINK = re.compile(r"(?i)(?<=[a-z])://|\bwww\.")
# Block markers, which count only at the start of a line: a list item ("- x", "+ x", "1. x", "1) x"),
# and a line of "=" or "-" alone (a heading's underline, a rule). "6.6 MB" or "-0.5" is no marker.
_LINE_START = re.compile(r"^([ \t]*)(?:([-+])(?=[ \t]|$)|(\d{1,9})(?=[.)](?:[ \t]|$))|([-=])(?=[-= \t]*$))",
                         re.MULTILINE)


class Markdown(str):
    """Text already safe to put into Markdown as it is (escaped by as_text, or a page's own words)."""


def as_text(value: object, view: str = "markdown") -> str:
    """`value` (any object, said with str()) escaped for `view`: "markdown", "answer", "html" or "code"."""
    if view == "markdown" and isinstance(value, Markdown):
        return value
    value = str(value)
    if view == "code":
        return value.replace("`", "\u02cb")
    escaped = html.escape(value, quote=view == "html")
    if view == "html":
        return escaped
    if view not in ("markdown", "answer"):
        raise ValueError(f"unknown view {view!r}")
    escaped = (_LINKING if view == "answer" else _INLINE).sub(lambda m: "\\" + m.group(0), escaped)
    escaped = _AUTOLINK.sub(lambda m: m.group(0).replace("/", "\\/").replace(".", "\\."), escaped)
    if view == "answer":
        return Markdown(escaped)
    escaped = _LINE_START.sub(_escape_marker, escaped)
    return Markdown(escaped)


def _escape_marker(match: re.Match) -> str:
    indent, bullet, number, rule = match.groups()
    if number:  # "1." / "1)": the punctuation after the number is what makes the list
        return f"{indent}{number}\\"
    return f"{indent}\\{bullet or rule}"
