"""Reasons from the backend in the page's language.

The backend writes each reason a person sees as an English `Problem` (backend/problems.py): the
sentence, a key and the values in it. zh.toml's [problems] has the Chinese sentence of each key
(ui/i18n.py loads it); a reason without a translation is shown in English, never dropped.
"""

from __future__ import annotations

from backend.problems import Problem
from ui.i18n import PROBLEMS_ZH, SETTING_KINDS_ZH

ZH = PROBLEMS_ZH


def say(reason: object, lang: str, labels: dict[str, str] | None = None) -> str:
    """One reason in `lang` (English where no translation exists): a Problem, a plain sentence, or an
    exception raised with a Problem (DataError, ImageError, JobError...). `labels` names settings as
    the form does ("批大小" rather than batch_size) in reasons about one setting's value."""
    if isinstance(reason, BaseException) and reason.args and isinstance(reason.args[0], Problem):
        reason = reason.args[0]
    if not isinstance(reason, Problem):
        return str(reason)
    # A value may be a reason of its own ("a.jpg was not read: <why the path is refused>").
    values = {name: say(value, lang) if isinstance(value, Problem) else value
              for name, value in reason.values.items()}
    if labels and values.get("name") in labels:
        values["name"] = labels[values["name"]]
    if lang == "zh" and reason.key in ZH:
        kind = values.get("kind")
        return ZH[reason.key].format(**values, kind_zh=SETTING_KINDS_ZH.get(kind, kind))
    return reason.sentence.format(**values)


def say_all(reasons: list[str], lang: str, labels: dict[str, str] | None = None) -> str:
    return ("" if lang == "zh" else " ").join(say(reason, lang, labels) for reason in reasons)
