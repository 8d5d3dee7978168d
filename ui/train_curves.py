"""The Train tab's curves: training and held-out loss against step, and each scored checkpoint's accuracy
with the best one named in a line (its set, size, whether trained on, and how its choices were read)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from backend.training import views
from ui.i18n import markdown, text


def loss_plot(points: list[dict], lang: str) -> gr.LinePlot:
    """The loss curve, its axes and series named in the page's language. No points: value None (not
    an empty frame): a Gradio 6.31 LinePlot that was once given an empty frame draws every later line
    without a colour, that is, invisibly."""
    series = {"train": text("tr_series_train", lang), "held-out": text("tr_series_eval", lang)}
    frame = None
    if points:
        frame = pd.DataFrame([{**p, "series": series.get(p["series"], p["series"])} for p in points],
                             columns=["step", "loss", "series"])
    return gr.LinePlot(value=frame, x_title=text("tr_col_step", lang), y_title=text("tr_col_loss", lang),
                       color_title="")


def accuracy_plot(points: list[views.AccuracyPoint], lang: str) -> gr.LinePlot:
    """Each scored checkpoint's accuracy on the job's evaluation set, named with the set (and "trained
    on" where the job trains on its photos). No points: hidden."""
    if not points:
        return gr.LinePlot(visible=False)
    # Short, or the legend cuts it: a held-out set says so in its name; only "trained on" is added.
    label = text("tr_accuracy_series", lang, name=points[-1].eval_set, count=points[-1].questions)
    if points[-1].trained_on:
        label += f" · {text('tr_trained_on', lang)}"
    frame = pd.DataFrame([{"step": p.step, "accuracy": round(100 * p.accuracy, 2), "series": label} for p in points])
    return gr.LinePlot(value=frame, x_title=text("tr_col_step", lang), y_title=text("tr_col_accuracy", lang),
                       y_lim=[0, 100], color_title="", visible=True)


def best_words(points: list[views.AccuracyPoint], lang: str) -> str:
    """The best scored checkpoint, in a line: its step, accuracy, set, size and whether trained on."""
    best = views.best_point(points)
    if best is None:
        return ""
    which = text("tr_trained_on" if best.trained_on else "tr_held_out", lang)
    return markdown("tr_best", lang, step=best.step, accuracy=100 * best.accuracy, name=best.eval_set,
                    count=best.questions, which=which, how=method_words(best, lang))


def method_words(point: views.AccuracyPoint, lang: str) -> str:
    """How the choices were read, and for the likeliest letter, where chance lies (an untrained model
    scores near it, not zero)."""
    if point.method == "letter":
        return text("tr_by_letter", lang, chance=100 * point.chance)
    return text("tr_by_reply", lang)
