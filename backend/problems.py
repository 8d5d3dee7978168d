"""Sentences for a person that a UI can say in another language.

The backend writes what went wrong in English. A `Problem` is that English sentence (a `str`, so
code and tests that read the message keep working) that also carries a key and the values in it;
ui/problems.py says it in the page's language. Exceptions meant for a person (a bad picture, a
dataset that cannot be read) derive from `ProblemError` and are raised with the parts of one.
"""

from __future__ import annotations

from typing import Any


class Problem(str):
    """One reason something cannot be done: the English sentence, which also carries a key and the
    values in it, so that a UI can say it in another language (ui/problems.py)."""

    key: str
    sentence: str  # the English template, before the values went in
    values: dict[str, Any]

    def __new__(cls, key: str, sentence: str, **values: Any) -> Problem:
        problem = super().__new__(cls, sentence.format(**values))
        problem.key, problem.sentence, problem.values = key, sentence, values
        return problem

    def __getnewargs_ex__(self) -> tuple[tuple[str, str], dict[str, Any]]:
        # Pickling and copying rebuild a Problem from its parts (str's own would pass only the text).
        return (self.key, self.sentence), self.values


class ProblemError(Exception):
    """An error whose message is one Problem: raise SomeError("key", "English {value}.", value=...).

    str(err) is the English sentence; `problem` is the Problem. One argument alone (a Problem, or a
    plain sentence, as when torch's DataLoader rebuilds a worker's error from its text) is kept as it
    is."""

    def __init__(self, key: str, sentence: str | None = None, **values: Any) -> None:
        super().__init__(key if sentence is None else Problem(key, sentence, **values))

    @property
    def problem(self) -> str:
        """The Problem (a plain str for an error made from a sentence alone)."""
        return self.args[0] if self.args else ""


def problem_to_json(reason: str) -> dict | str:
    """A reason as JSON, to keep beside its English text (a job's error in SQLite and result.json): a
    Problem as its key, template and values (values that are Problems in turn), any other str as is."""
    if not isinstance(reason, Problem):
        return str(reason)
    return {"key": reason.key, "sentence": reason.sentence,
            "values": {name: problem_to_json(value) if isinstance(value, Problem)
                       else value if isinstance(value, (int, float, bool, type(None))) else str(value)
                       for name, value in reason.values.items()}}


def problem_from_json(data: dict | str) -> str:
    """The reason problem_to_json wrote: a Problem again, or the plain sentence."""
    if not isinstance(data, dict):
        return str(data)
    values = {name: problem_from_json(value) if isinstance(value, dict) else value
              for name, value in data.get("values", {}).items()}
    return Problem(data["key"], data["sentence"], **values)
