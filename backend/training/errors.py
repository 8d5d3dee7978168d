"""The training program's failures that a person can act on."""

from __future__ import annotations

from backend.problems import ProblemError


class TrainingError(ProblemError, RuntimeError):
    """A failure with a sentence that tells the person what to do: raise TrainingError("key",
    "English {value}.", value=...), so that the Train tab can say it in the page's language."""
