"""UI text in Chinese and English.

Labels go through gr.I18n, so the browser shows its own language without a round trip. Sentences
made on the server (warnings, status lines) use `text(key, lang)`, where lang comes from --lang
or the browser's Accept-Language header.
"""

from __future__ import annotations

import re

import gradio as gr

from backend.evaluation.choices import BUNDLED_SET, HELD_OUT, TRAINED, set_kind

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "🍜 Foodie Studio",
        "subtitle": "Taste and fine-tune food vision-language models.",
        "tab_chat": "Chat",
        "tab_dataset": "Dataset",
        "tab_train": "Train",
        "tab_compare": "Compare",
        "input_placeholder": "Drop a dish photo here and ask about it…",
        "input_label": "Your question and photos",
        "task_sivqa": "single-image", "task_mivqa": "multi-image", "task_textqa": "text",
        "task_conversation": "conversation",
        "clear": "🗑️ New conversation",
        "settings": "Generation settings",
        "max_new_tokens": "Max new tokens",
        "temperature": "Temperature (0 = greedy)",
        "top_p": "Top-p",
        "quick_examples": "Quick examples: click a dish",
        "example_questions": "Example questions",
        "q_cuisine": "Which cuisine?",
        "q_taste": "How does it taste?",
        "q_where": "Where to eat it?",
        "q_plating": "How is it plated?",
        "model_label": "Model",
        "demo_notice": (
            "**You are talking to the built-in demo model.** It is a tiny Qwen2-VL with random "
            "weights, built on this machine so the app works without downloads: **its answers are "
            "gibberish until you train it** in the Train tab. For a real model run "
            "`python app.py --model Qwen/Qwen2-VL-2B-Instruct` (or a local folder)."),
        "tiny_notice": "**This model has random weights** (a tiny test model): expect gibberish.",
        "tuned_notice": (
            "**You are talking to {base} with the adapter {adapter}.** The model under it has random "
            "weights, so it knows only what the adapter learned: ask the way its training data asks, about "
            "its photos (for the bundled dishes, a quick example), and expect a guess elsewhere."),
        "busy": "Still answering the last question: wait for it, or press Stop.",
        "bad_image": "This picture cannot be used: {detail}",
        "failed": "The model failed to answer: {detail}",
        "scoring_failed": "Scoring failed: {detail}",
        "stopped": "(stopped)",
        "cmp_demo_notice": (
            "**Both sides run on the built-in demo model, whose weights are random.** The base model says "
            "gibberish; a checkpoint knows only what its adapter learned (for the bundled dishes, their names, "
            "asked the way the training set asks). Expect gibberish, and on multiple-choice questions mostly "
            "*unparsed* replies, until you train on such questions; a real model: `python app.py --model …`."),
        "cmp_left": "Left",
        "cmp_right": "Right",
        "cmp_refresh": "🔄 Refresh",
        "cmp_scoring": "Score on multiple-choice questions",
        "cmp_scoring_help": (
            "Both models answer every question of the set, in batches; the reply's letter is "
            "parsed, and a reply that names no single choice counts as *unparsed*, never as a guess. "
            "**Trained** questions show what a checkpoint learned; only **held-out** questions (whole "
            "dishes it never saw) show whether it generalises. Scores are saved beside the checkpoint."),
        "cmp_question_set": "Question set",
        "cmp_prompt_lang": "Prompt language",
        "cmp_batch": "Batch size",
        "cmp_batch_info": ("Questions per generate call with the transformers engine. LMDeploy takes every "
                           "question at once and batches them itself; then this only sets how often progress updates."),
        "cmp_score": "Score both",
        "cmp_by_task": "By task",
        "cmp_by_question_type": "By question type",
        "cmp_by_cuisine": "By cuisine",
        "cmp_per_question": "Every question",
        "cmp_csv": "CSV",
        "cmp_csv_failed": "The scores are shown and saved beside the checkpoint, but their CSV file could not be "
                          "written: {detail}",
        "demo_source": "demo: tiny Qwen2-VL, random weights",
        "demo_model_name": "the built-in demo model",
        "model_base": "base model", "model_final": "{job} · final", "model_step": "{job} · step {step}",
        "model_loss": "{label} · loss {loss:.3f}",
        "set_trained": "trained · {name}", "set_heldout": "held-out · {name}", "set_bundled": "bundled sample (all)",
        "cmp_summary": "{set} — {count} questions. {scores}",
        "cmp_scored_once": "Both sides are the same model, so it was scored once.",
        "cmp_model_score": "**{model}**: {accuracy:.1f}% ({unparsed} unparsed)",
        "cmp_col_group": "group", "cmp_col_task": "task", "cmp_col_question_type": "question type",
        "cmp_col_cuisine": "cuisine", "cmp_total": "all", "cmp_unparsed": "{count} unparsed",
        "cmp_col_id": "id", "cmp_col_question": "question", "cmp_col_right": "right",
        "cmp_col_picked": "{model}: picked", "cmp_col_reply": "{model}: reply", "cmp_col_correct": "{model}: ✓",
        "cmp_scoring_model": "scoring {model}", "cmp_scoring_step": "{index}/{count} · scoring {model}",
    },
    "zh": {
        "title": "🍜 Foodie Studio 美食视觉模型工坊",
        "subtitle": "品尝并微调美食视觉语言模型。",
        "tab_chat": "对话",
        "tab_dataset": "数据集",
        "tab_train": "训练",
        "tab_compare": "对比",
        "input_placeholder": "把菜品照片拖到这里，然后提问……",
        "input_label": "你的问题和照片",
        "task_sivqa": "单图", "task_mivqa": "多图", "task_textqa": "纯文本", "task_conversation": "对话",
        "clear": "🗑️ 新对话",
        "settings": "生成设置",
        "max_new_tokens": "最多生成的 token 数",
        "temperature": "温度（0 为贪心解码）",
        "top_p": "Top-p",
        "quick_examples": "快速示例：点击一道菜",
        "example_questions": "示例问题",
        "q_cuisine": "属于哪个菜系？",
        "q_taste": "是什么味道？",
        "q_where": "去哪里吃？",
        "q_plating": "怎么摆盘？",
        "model_label": "模型",
        "demo_notice": (
            "**当前是内置的演示模型。** 它是在本机构建的微型 Qwen2-VL，权重随机初始化，"
            "无需下载即可运行：**训练之前它的回答是乱码**，请在“训练”页训练它。"
            "要使用真实模型，请运行 `python app.py --model Qwen/Qwen2-VL-2B-Instruct`（或本地文件夹）。"),
        "tiny_notice": "**该模型权重为随机值**（微型测试模型）：回答会是乱码。",
        "tuned_notice": (
            "**当前是{base}加上适配器 {adapter}。** 底下的模型权重是随机的，它只知道适配器学到的内容："
            "请按训练数据的问法、就训练数据里的照片提问（内置菜品可直接点快速示例），其他问题它只能乱猜。"),
        "busy": "上一个问题还在回答中：请稍候，或点击停止。",
        "bad_image": "这张图片无法使用：{detail}",
        "failed": "模型回答失败：{detail}",
        "scoring_failed": "评分失败：{detail}",
        "stopped": "（已停止）",
        "cmp_demo_notice": (
            "**两侧都运行在内置演示模型上，它的权重是随机的。** 基础模型的回答是乱码；检查点只知道适配器学到的内容"
            "（内置菜品：按训练集的问法问菜名）。在用这类题训练之前，回答会是乱码，选择题大多记为*未解析*；"
            "要使用真实模型，请运行 `python app.py --model …`。"),
        "cmp_left": "左侧",
        "cmp_right": "右侧",
        "cmp_refresh": "🔄 刷新",
        "cmp_scoring": "在选择题上打分",
        "cmp_scoring_help": (
            "两个模型分批回答集合中的每道题；从回答中解析选项字母，无法对应唯一选项的回答记为"
            "*未解析*，绝不当作随机猜测。**训练集**上的分数说明检查点学到了什么；只有**留出集**"
            "（它从未见过的整道菜）才说明它能否泛化。分数保存在检查点旁边。"),
        "cmp_question_set": "题目集合",
        "cmp_prompt_lang": "提示语言",
        "cmp_batch": "批大小",
        "cmp_batch_info": "使用 transformers 引擎时，每次生成调用的问题数。LMDeploy 一次接收全部问题并自行分批，此时它只决定进度更新的频率。",
        "cmp_score": "为两者打分",
        "cmp_by_task": "按任务",
        "cmp_by_question_type": "按题型",
        "cmp_by_cuisine": "按菜系",
        "cmp_per_question": "每道题",
        "cmp_csv": "CSV",
        "cmp_csv_failed": "分数已显示并保存在检查点旁，但无法写出 CSV 文件：{detail}",
        "demo_source": "演示模型：微型 Qwen2-VL，随机权重",
        "demo_model_name": "内置演示模型",
        "model_base": "基础模型", "model_final": "{job} · 最终", "model_step": "{job} · 第 {step} 步",
        "model_loss": "{label} · 损失 {loss:.3f}",
        "set_trained": "训练过的题 · {name}", "set_heldout": "留出的题 · {name}", "set_bundled": "内置样例（全部）",
        "cmp_summary": "{set} — 共 {count} 题。{scores}",
        "cmp_scored_once": "两侧是同一个模型，只打了一次分。",
        "cmp_model_score": "**{model}**：{accuracy:.1f}%（{unparsed} 题无法解析）",
        "cmp_col_group": "分组", "cmp_col_task": "任务", "cmp_col_question_type": "题型",
        "cmp_col_cuisine": "菜系", "cmp_total": "全部", "cmp_unparsed": "{count} 题无法解析",
        "cmp_col_id": "编号", "cmp_col_question": "问题", "cmp_col_right": "正确答案",
        "cmp_col_picked": "{model}：所选", "cmp_col_reply": "{model}：回答", "cmp_col_correct": "{model}：对错",
        "cmp_scoring_model": "正在为 {model} 打分", "cmp_scoring_step": "{index}/{count} · 正在为 {model} 打分",
    },
}

LANGS = ("en", "zh")


def model_label(choice, lang: str) -> str:
    """A model choice (backend.evaluation.choices.ModelChoice) named in `lang`."""
    if choice.step is None:
        return text("model_base", lang)
    label = text("model_final" if choice.final else "model_step", lang, job=choice.job_name, step=choice.step)
    return label if choice.loss is None else text("model_loss", lang, label=label, loss=choice.loss)


def set_label(name: str, lang: str) -> str:
    """A question set's name ("trained · <set>", "held-out · <set>", "FoodieQA · <folder>") in `lang`;
    the name itself stays the set's key."""
    if name == BUNDLED_SET:
        return text("set_bundled", lang)
    kind, training_set = set_kind(name)
    key = {TRAINED: "set_trained", HELD_OUT: "set_heldout"}.get(kind)
    return text(key, lang, name=training_set) if key else name


def task_word(task: str, lang: str) -> str:
    """A task id (sivqa, mivqa, textqa, conversation) as the Dataset tab names it; others as they are."""
    key = f"task_{task}"
    return text(key, lang) if key in STRINGS["en"] else task


# FoodieQA's question types (its own labels, an open set), said in Chinese on a Chinese page; an
# English page shows a label as words ("main-ingredient" as "main ingredient"), and a Chinese page
# keeps a type not listed here as the data has it.
QUESTION_TYPES_ZH = {
    "cuisine_type": "菜系", "main-ingredient": "主料", "ingredients": "食材", "food_name": "菜名",
    "flavor": "口味", "location": "地点", "region": "地区", "food_culture": "饮食文化",
    "eating_habit": "饮食习惯", "cooking_skills": "烹饪技法", "color": "颜色", "allergy": "过敏原",
}


def question_type_word(question_type: str, lang: str) -> str:
    if lang == "zh":
        return QUESTION_TYPES_ZH.get(question_type, question_type)
    return re.sub(r"[_-]+", " ", question_type).strip() or question_type


def value_word(facet: str, value: str, lang: str) -> str:
    """A task's or a question type's value in `lang` (the Dataset and Compare tabs name them alike);
    any other facet's value as it is."""
    word = {"task": task_word, "question_type": question_type_word}.get(facet)
    return word(value, lang) if word else value


def add_strings(table: dict[str, dict[str, str]]) -> None:
    """Let a tab module keep its own labels beside its widgets: called once at its import."""
    for lang in LANGS:
        clash = STRINGS[lang].keys() & table[lang].keys()
        if clash:
            raise KeyError(f"UI string keys defined twice: {sorted(clash)}")
        STRINGS[lang].update(table[lang])


def text(key: str, lang: str, **values: object) -> str:
    template = STRINGS.get(lang, STRINGS["en"]).get(key) or STRINGS["en"][key]
    return template.format(**values) if values else template


def make_i18n(forced: str | None) -> gr.I18n:
    """Follow the browser, or show one language everywhere when --lang forces it."""
    if forced:
        table = STRINGS[forced]
        return gr.I18n(en=table, zh=table, **{"zh-CN": table, "zh-TW": table, "en-US": table})
    return gr.I18n(en=STRINGS["en"], zh=STRINGS["zh"], **{"zh-CN": STRINGS["zh"], "zh-TW": STRINGS["zh"]})


def request_lang(request: gr.Request | None, forced: str | None) -> str:
    """--lang if given, else the browser's first preference among ours."""
    if forced:
        return forced
    header = ""
    if request is not None:
        header = (request.headers.get("accept-language") or "") if request.headers else ""
    for part in header.split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"
