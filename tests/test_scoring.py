"""Multiple-choice scoring: the answer parser, batched scoring, and adapters beside one base."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.data import read_bundled_sample
from backend.evaluation.multiple_choice import parse_choice, prompt_turn
from backend.evaluation.scoring import Preparation, ScoreRun, load_runs, save, score, side_by_side, to_csv
from backend.inference.engine import GenerationSettings, Turn
from backend.inference.transformers_engine import TransformersEngine
from backend.models.loading import load, resolve

CHOICES = ("京菜", "徽菜", "新疆菜", "桂菜")


@pytest.mark.parametrize("reply, expected", [
    ("(C)", 2), ("（C）新疆菜", 2), ("C", 2), ("C) 新疆菜。这道菜是大盘鸡。", 2), ("答案：(C) 新疆菜。", 2),
    ("答案是C", 2), ("The answer is (B).", 1), ("Answer: D", 3), ("B. 徽菜", 1), ("新疆菜", 2),
    ("这是新疆菜。", 2), ("a dumpling dish", None), ("(A) or (B)", None), ("京菜还是徽菜", None),
    ("", None), ("E", None), ("🍜", None), ("(E)", None),
])
def test_the_parser_reads_the_forms_models_answer_in(reply, expected):
    assert parse_choice(reply, CHOICES) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.lists(st.text(max_size=12), max_size=6))
def test_the_parser_never_crashes_and_never_picks_outside_the_choices(reply, choices):
    picked = parse_choice(reply, tuple(choices))
    assert picked is None or 0 <= picked < len(choices)


@pytest.fixture(scope="module")
def sample():
    return read_bundled_sample().records


@pytest.fixture(scope="module")
def engine(tiny_models):
    return TransformersEngine(load(resolve(str(tiny_models["qwen2_vl"]))))


def test_prompts_carry_their_pictures(sample):
    by_task = {r.task: r for r in sample}
    assert len(prompt_turn(by_task["sivqa"]).images) == 1
    assert len(prompt_turn(by_task["mivqa"]).images) == 4
    assert prompt_turn(by_task["textqa"]).images == ()
    assert "(A)" in prompt_turn(by_task["sivqa"]).text and "<image>" not in prompt_turn(by_task["sivqa"]).text


def test_batched_scoring_gives_the_same_replies_as_one_at_a_time(engine, sample):
    records = [r for r in sample if r.task == "sivqa"][:6]
    batched = score(engine, records, batch_size=6)
    single = score(engine, records, batch_size=1)
    assert [q.reply for q in batched.questions] == [q.reply for q in single.questions]
    assert len(batched.questions) == 6


def test_an_untrained_model_is_mostly_unparsed_not_lucky(engine, sample):
    run = score(engine, [r for r in sample if r.task == "sivqa"][:8], batch_size=8)
    assert run.unparsed >= 6, "gibberish must not be scored as a guess"


def make_adapter(model_dir, out_dir, seed: int):
    from peft import LoraConfig, get_peft_model

    base = load(resolve(str(model_dir))).model
    torch.manual_seed(seed)
    targets = ["model.language_model.layers.0.self_attn.q_proj", "model.language_model.layers.1.mlp.down_proj"]
    get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False)
                   ).save_pretrained(out_dir)
    return str(out_dir)


def test_two_adapters_share_one_base_and_the_base_answers_as_before(tiny_models, tmp_path):
    engine = TransformersEngine(load(resolve(str(tiny_models["qwen2_vl"]))))
    question = [[Turn("user", "这是什么菜？")]]
    quick = GenerationSettings(max_new_tokens=10)
    before = engine.generate_batch(question, quick)
    base_tensors = {p.data_ptr() for p in engine.loaded.model.parameters()}
    engine.load_adapter("one", make_adapter(tiny_models["qwen2_vl"], tmp_path / "a1", 1))
    engine.load_adapter("two", make_adapter(tiny_models["qwen2_vl"], tmp_path / "a2", 2))
    assert engine.generate_batch(question, quick) == before
    one, two = engine.generate_batch(question, quick, "one"), engine.generate_batch(question, quick, "two")
    assert one != before and two != before and one != two
    # the base weights are the very same tensors: no second copy was made
    assert base_tensors <= {p.data_ptr() for p in engine.loaded.model.parameters()}
    with pytest.raises(ValueError, match="no adapter named"):
        engine.generate_batch(question, quick, "three")


def test_runs_save_load_and_export(tmp_path, engine, sample):
    records = [r for r in sample if r.task == "textqa"][:3]
    run = score(engine, records, split="held-out")
    path = save(run, tmp_path)
    assert path.exists() and load_runs(tmp_path)[0].to_json() == run.to_json()
    other = ScoreRun.from_json(run.to_json())
    other.model = "tuned"
    table = side_by_side([run, other], "task")
    assert table[-1][0] == "all" and len(table[-1]) == 3
    assert to_csv([run, other]).splitlines()[0].startswith("id,question,right,base picked")


def test_base_and_tuned_stream_together_and_match_their_separate_answers(tiny_models, tmp_path):
    engine = TransformersEngine(load(resolve(str(tiny_models["qwen2_vl"]))))
    engine.load_adapter("tuned", make_adapter(tiny_models["qwen2_vl"], tmp_path / "t", 3))
    turns = [Turn("user", "这是什么菜？", (str(read_bundled_sample().records[0].images[0]),))]
    quick = GenerationSettings(max_new_tokens=12)
    order, texts = [], {0: "", 1: ""}
    for row, piece in engine.stream_many([(turns, None), (turns, "tuned")], quick):
        order.append(row)
        texts[row] += piece
    assert texts[0] == "".join(engine.stream(turns, quick))
    assert texts[1] == "".join(engine.stream(turns, quick, adapter="tuned"))
    assert texts[0] != texts[1]
    first_of_right = order.index(1)
    assert 0 in order[first_of_right:], "the two answers interleave: they grow at the same time"


@pytest.mark.parametrize("damage", ["truncated weights", "no config"])
def test_a_damaged_checkpoint_is_refused_with_a_sentence_and_changes_nothing(tiny_models, tmp_path, damage):
    from backend.inference.engine import AdapterError

    folder = tmp_path / "damaged"
    make_adapter(tiny_models["qwen2_vl"], folder, 4)
    if damage == "truncated weights":
        weights = folder / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        (folder / "adapter_config.json").unlink()
    engine = TransformersEngine(load(resolve(str(tiny_models["qwen2_vl"]))))
    question = [[Turn("user", "这是什么菜？")]]
    before = engine.generate_batch(question, GenerationSettings(max_new_tokens=8))
    with pytest.raises(AdapterError, match="cannot be loaded"):
        engine.load_adapter("broken", str(folder))
    assert engine.adapters == {}
    assert engine.generate_batch(question, GenerationSettings(max_new_tokens=8)) == before


def test_the_score_tables_are_said_in_the_page_language(engine, sample):
    """The Compare tab's summary, breakdown headers, total row and per-question headers in Chinese
    on a zh page, and as before in English (API clients read the English summary)."""
    from pathlib import Path

    from backend.catalog import ModelChoice
    from ui.compare_scores import score_tables
    from ui.i18n import model_label, set_label

    run = score(engine, [r for r in sample if r.task == "sivqa"][:3])
    tuned = ModelChoice("j:final", Path("/x"), None, "my-lora", 90, True, 0.0931)
    step = ModelChoice("j:30", Path("/y"), None, "my-lora", 30, False, None)
    base = ModelChoice("base")
    assert [c.label for c in (base, tuned, step)] == ["base model", "my-lora · final · loss 0.093", "my-lora · step 30"]
    assert [model_label(c, "en") for c in (base, tuned, step)] == [c.label for c in (base, tuned, step)]
    assert [model_label(c, "zh") for c in (base, tuned, step)] == [
        "基础模型", "my-lora · 最终 · 损失 0.093", "my-lora · 第 30 步"]
    assert set_label("held-out · dishes", "zh") == "留出的题 · dishes"
    assert set_label("held-out · dishes", "en") == "held-out · dishes"
    assert set_label("FoodieQA · data", "zh") == "FoodieQA · data"
    assert set_label("bundled sample (all)", "zh") == "内置样例（全部）"

    summary, by_task, _, _, per_question = score_tables([run, run], ["基础模型", "my-lora · 最终"], "留出的题 · dishes",
                                                        3, "zh")
    assert summary.startswith("留出的题 · dishes — 共 3 题，选择从回答读取。**基础模型**：") and "题无法解析" in summary
    assert by_task.headers == ["任务", "基础模型", "my-lora · 最终"] and by_task.value["data"][-1][0] == "全部"
    assert per_question.headers[:3] == ["编号", "问题", "正确答案"] and per_question.headers[3] == "基础模型：所选"
    english = score_tables([run], ["base model"], "held-out · dishes", 3, "en")[0]
    assert english == (f"held-out · dishes — 3 questions, each choice read from the reply. **base model**: "
                       f"{100 * run.accuracy:.1f}% "
                       f"({run.unparsed} unparsed)")


def test_a_csv_that_cannot_be_written_leaves_the_scores_and_the_page(tmp_path) -> None:
    """The download is written where Gradio serves from; if that fails (here the folder's place is a
    file), the page keeps its tables and says why in a warning instead of failing the scoring."""
    from ui.compare_scores import csv_download

    written = csv_download([], ["编号", "问题"], tmp_path / "scores", "zh")
    assert written.visible and (tmp_path / "scores").is_dir()
    assert Path(written.value["path"]).read_text(encoding="utf-8-sig").splitlines() == ["编号,问题"]
    (tmp_path / "blocked").write_text("a file where the folder should be")
    with pytest.warns(UserWarning, match="无法写出 CSV 文件"):
        refused = csv_download([], ["编号", "问题"], tmp_path / "blocked" / "scores", "zh")
    assert not refused.visible


def test_questions_are_asked_by_picture_size_and_listed_as_given(engine, sample):
    """Batches of like-sized prompts pad little; the run still lists the questions in the set's order."""
    from PIL import Image

    asked: list[list[int]] = []
    real = engine.reply_inputs

    def noting(conversations):
        asked.append([sum(Image.open(p).width * Image.open(p).height for t in turns for p in t.images)
                      for turns in conversations])
        return real(conversations)

    by_task = {task: [r for r in sample if r.task == task] for task in ("sivqa", "textqa", "mivqa")}
    # one picture, none, four: interleaved, so the set's order is not the size order
    records = [r for trio in zip(*by_task.values()) for r in trio][:12]
    engine.reply_inputs = noting
    try:
        run = score(engine, records, batch_size=4, preparation=Preparation(threads=1))  # one thread: in order
    finally:
        del engine.reply_inputs
    sizes = [size for batch in asked for size in batch]
    assert sizes == sorted(sizes) and len(set(sizes)) > 1
    assert [q.record_id for q in run.questions] == [r.id for r in records]


@pytest.mark.parametrize("method", ["reply", "letter"])
def test_batches_prepared_in_threads_or_kept_answer_as_one_thread_does(engine, sample, method):
    records = [r for r in sample if r.task in ("sivqa", "mivqa")][:10]
    alone = score(engine, records, batch_size=3, method=method, preparation=Preparation(threads=1))
    kept = Preparation(threads=4, budget=2**30)
    first = score(engine, records, batch_size=3, method=method, preparation=kept)
    again = score(engine, records, batch_size=3, method=method, preparation=kept)
    assert kept.reused == 4 and len(kept.kept) == 4  # 10 questions in batches of 3, all kept, all reused
    replies = [[q.reply for q in run.questions] for run in (alone, first, again)]
    assert replies[0] == replies[1] == replies[2]
    none_kept = Preparation(budget=0)
    score(engine, records, batch_size=3, method=method, preparation=none_kept)
    assert none_kept.kept == {} and none_kept.reused == 0
