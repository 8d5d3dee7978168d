"""A bad picture or a bad dataset is said in the page's language (ui/problems.py, ui/locales/zh.toml)."""

from __future__ import annotations

import ast
import re
import string
import warnings
from pathlib import Path

import pytest
from PIL import Image

import backend.chat
import backend.data
import backend.evaluation.score_request
import backend.images
import backend.training.job_form
from backend.data import DataError, read_data_folder, unpack_upload
from backend.data.library import check_name
from backend.data.schema import Record
from backend.data.terms import TermsNotAccepted, require_terms
from backend.images import ImageError, open_image
from backend.problems import Problem
from ui.i18n import load_locale
from ui.problems import ZH, say

# The errors whose message is a Problem, and the files that raise them.
ERRORS = ("ImageError", "ChatInputError", "DataError", "UnsafePath", "TermsNotAccepted", "ScoringRequestError",
          "SourceIncomplete", "SaveRefused", "SeveralDataSets")
SOURCES = [Path(backend.images.__file__), Path(backend.chat.__file__),
           *sorted(Path(backend.data.__file__).parent.glob("*.py")),
           *sorted((Path(backend.data.__file__).parent / "formats").glob("*.py")),  # one reader per format
           Path(backend.training.job_form.__file__), Path(backend.evaluation.score_request.__file__)]
BACKEND = Path(backend.data.__file__).parents[1]
CHINESE = re.compile(r"[\u4e00-\u9fff]")
DATA_DIR = Path(backend.data.__file__).parent



def problem_names(tree: ast.Module) -> set[str]:
    """The names a file calls backend.problems.Problem by (its own name, or another it is imported
    under)."""
    return {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "backend.problems"
            for alias in node.names if alias.name == "Problem"}


def raised_sentences(sources: list[Path] = SOURCES, errors: tuple[str, ...] = ERRORS,
                     problems_in: tuple[Path, ...] = (DATA_DIR, DATA_DIR / "formats")) -> dict[str, str]:
    """Every key -> its English template, read from the source: SomeError("key", "sentence", ...), and
    in the folders `problems_in` (backend/data/: the report and an upload) Problem("key", "sentence", ...)."""
    sentences: dict[str, str] = {}
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        problems = problem_names(tree) if path.parent in problems_in else set()
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) in {*errors, *problems}):
                continue
            if len(node.args) == 1 and not isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                continue  # an error's Problem passed on: UnsafePath(answer.problem)
            if node.func.id in problems and isinstance(node.args[0], ast.Attribute) and node.args[0].attr == "key":
                continue  # a Problem rebuilt from another's parts (rows.sentence's capital letter)
            parts = [a.value if isinstance(a, ast.Constant) else None for a in node.args[:2]]
            assert len(parts) == 2 and all(isinstance(p, str) for p in parts), (
                f"{path.name}:{node.lineno}: {node.func.id}(\"key\", \"English sentence\", values...)"
                " so that a page in another language can say it")
            key, sentence = parts
            assert sentences.get(key, sentence) == sentence, f"{key} names two sentences"
            sentences[key] = sentence
    return sentences


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def values_of(problem: Problem) -> list[object]:
    """A Problem's values, and those of the Problems among them (a reason inside a reason)."""
    return [leaf for value in problem.values.values()
            for leaf in (values_of(value) if isinstance(value, Problem) else [value])]


def english_left(chinese: str, problem: Problem) -> list[str]:
    """Runs of English words in a Chinese sentence once its values are taken out."""
    for value in sorted(map(str, values_of(problem)), key=len, reverse=True):
        chinese = chinese.replace(value, " ")
    return re.findall(r"[A-Za-z]{2,}(?: [A-Za-z]{2,})+", chinese.replace("Foodie Studio", " "))


def test_every_picture_and_dataset_error_has_a_key_and_a_chinese_sentence_with_the_same_values():
    sentences = raised_sentences()
    assert len(sentences) >= 120, sorted(sentences)  # the walk still finds the errors and the report's reasons
    assert {"row_skipped", "row_picture_bad", "json_invalid", "upload_left_out"} <= set(sentences)
    assert set(sentences) - set(ZH) == set()
    for key, sentence in sentences.items():
        assert fields(ZH[key]) == fields(sentence), key
        # a sentence put together from others ("{first}；{rest}") has no words of its own
        assert CHINESE.search(ZH[key]) or not re.sub(r"\{[^{}]*\}|[\s；：。]", "", ZH[key]), key
    said = set(sentences) | keys_raised_in(BACKEND)
    assert set(ZH) - said == set(), "a translation of a sentence no one says"


def keys_raised_in(folder: Path) -> set[str]:
    """Every Problem key the backend gives with its English sentence: ("key", "English...")."""
    found = re.compile(r"""\(\s*"([a-z][a-z0-9_]*)",\s*(?:\n\s*)?["(]""")
    return {key for path in folder.rglob("*.py") for key in found.findall(path.read_text(encoding="utf-8"))}


def test_a_locale_file_that_names_a_key_twice_is_refused(tmp_path):
    (tmp_path / "en.toml").write_text('[chat]\nbusy = "a"\n[train]\nbusy = "b"\n', encoding="utf-8")
    with pytest.raises(KeyError, match="busy"):
        load_locale("en", tmp_path)


def dataset_errors(tmp_path: Path) -> list[Exception]:
    """A few of the errors people meet most, made the way they meet them."""
    errors = []

    def caught(call, *args, **kwargs) -> None:
        with pytest.raises((DataError, ImageError, TermsNotAccepted)) as raised:
            call(*args, **kwargs)
        errors.append(raised.value)

    (tmp_path / "broken.jpg").write_bytes(b"%PDF-1.4 not a picture")
    caught(open_image, tmp_path / "broken.jpg", 10_000)
    Image.new("RGB", (400, 300), "green").save(tmp_path / "half.jpg", quality=95)
    (tmp_path / "half.jpg").write_bytes((tmp_path / "half.jpg").read_bytes()[:2000])
    caught(open_image, tmp_path / "half.jpg", 10_000)
    caught(open_image, tmp_path / "gone.png", 10_000)
    caught(read_data_folder, tmp_path / "nowhere")
    several = tmp_path / "several"
    several.mkdir()
    (several / "a.json").write_text("[]", encoding="utf-8")
    (several / "b.csv").write_text("image,question,answer\n", encoding="utf-8")
    caught(read_data_folder, several)
    escaping = tmp_path / "escaping"
    escaping.mkdir()
    (tmp_path / "outside.json").write_text("[]", encoding="utf-8")
    (escaping / "evil.json").symlink_to(tmp_path / "outside.json")
    caught(read_data_folder, escaping)
    caught(check_name, "x" * 65)
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    caught(unpack_upload, [tmp_path / "fake.zip"], tmp_path / "upload")
    caught(require_terms, [Record(id="q1", task="sivqa", source="foodieqa")] * 3, False)
    return errors


def test_picture_and_dataset_errors_are_said_in_chinese_with_their_values(tmp_path):
    errors = dataset_errors(tmp_path)
    keys = [err.problem.key for err in errors]
    assert keys == ["picture_unreadable", "picture_damaged", "picture_not_found", "nothing_at",
                    "own_folder_several", "data_file_unsafe", "set_name_long", "zip_unreadable",
                    "foodieqa_terms"]
    for err in errors:
        assert say(err, "en") == str(err)
        chinese = say(err, "zh")
        assert CHINESE.search(chinese) and english_left(chinese, err.problem) == [], chinese
        for name, value in err.problem.values.items():
            if not isinstance(value, Problem):  # a reason inside a reason is said in Chinese too
                assert format(value, ".0f" if isinstance(value, float) else "") in chinese, (name, chinese)

    said = {err.problem.key: say(err, "zh") for err in errors}
    assert str(errors[0]) == "broken.jpg is not a picture Foodie Studio can read (JPEG, PNG, WebP, GIF, BMP…)."
    assert said["picture_unreadable"] == ("broken.jpg 不是 Foodie Studio 能读取的图片"
                                          "（支持 JPEG、PNG、WebP、GIF、BMP 等）。")
    assert str(errors[3]) == f"There is nothing at {tmp_path / 'nowhere'}."
    assert said["nothing_at"] == f"{tmp_path / 'nowhere'} 不存在。"
    assert said["own_folder_several"] == (f"文件夹 {(tmp_path / 'several').resolve()} "
                                          "里有多个数据文件（a.json, b.csv），请只选一个。")
    assert str(errors[5]) == "evil.json was not read: it leads outside the data folder (through a symbolic link)."
    assert said["data_file_unsafe"] == "没有读取 evil.json：路径（经符号链接）指向了数据文件夹之外。"
    assert said["set_name_long"] == "名称有 65 个字符，最多 64 个。"
    assert said["foodieqa_terms"].startswith("所选记录中有 3 条来自 FoodieQA，它采用 CC BY-NC-ND 4.0 许可")


def test_an_error_made_from_its_text_alone_is_shown_as_it_is():
    # torch's DataLoader rebuilds a worker's error from its message: ImageError(text)
    rebuilt = ImageError("a.jpg is damaged or truncated and cannot be read (broken data stream).")
    assert say(rebuilt, "zh") == str(rebuilt) and isinstance(rebuilt, ValueError)
    assert say(OSError(28, "No space left on device"), "zh") == "[Errno 28] No space left on device"


def test_a_problem_survives_pickling(tmp_path):
    import pickle

    with pytest.raises(DataError) as raised:
        read_data_folder(tmp_path / "nowhere")
    copy = pickle.loads(pickle.dumps(raised.value))
    assert str(copy) == str(raised.value) and say(copy, "zh") == f"{tmp_path / 'nowhere'} 不存在。"


def test_the_chat_tab_on_a_chinese_page_says_why_a_picture_cannot_be_used(tmp_path):
    from backend.chat import ChatSession
    from backend.services import Services
    from backend.settings import Settings
    from backend.training.jobs import JobStore
    from ui.chat import chat

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"%PDF-1.4 not a picture")
    services = Services(Settings(workdir=tmp_path), None, None, 112 * 112, [], JobStore(tmp_path))
    message = {"text": "这是什么菜？", "files": [str(broken)]}
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        outputs = list(chat(message, ChatSession(), 64, 0.0, 1.0, None, "zh", services))
    assert [str(w.message) for w in shown if w.category is UserWarning] == [  # gr.Warning's category
        "这张图片无法使用：broken.jpg 不是 Foodie Studio 能读取的图片（支持 JPEG、PNG、WebP、GIF、BMP 等）。"]
    assert len(outputs) == 1 and outputs[0][0] == [], "nothing was added to the conversation"


def test_the_compare_tab_on_a_chinese_page_says_why_scoring_cannot_start(tmp_path):
    import gradio as gr

    from backend.services import Services
    from backend.settings import Settings
    from backend.training.jobs import JobStore
    from ui.compare_scores import run_scores

    services = Services(Settings(workdir=tmp_path), None, None, 112 * 112, [], JobStore(tmp_path))
    for page, said in [("zh", "请先选择一个题目集（列表为空时请点“刷新”）。"),
                       ("en", "Pick a question set first (press Refresh if the list is empty).")]:
        with pytest.raises(gr.Error) as raised:
            # the questions would be asked in English: the page's language decides what is said
            run_scores("base", "base", "", "en", 16, services, progress=lambda *a, **k: None, page_lang=page)
        assert raised.value.message == said


# --- the report of a dataset with bad rows, and the files an upload leaves out -----------------------

def malformed_datasets(tmp_path: Path):
    """A FoodieQA-layout folder, an own-data JSON and an own-data CSV, each with rows people get wrong."""
    import json
    import shutil

    from backend.data.foodieqa import read_foodieqa_folder
    from backend.data.own_data import read_own_data
    from tests.conftest import EXAMPLES

    foodieqa = tmp_path / "FoodieQA"
    shutil.copytree(EXAMPLES / "images", foodieqa / "images")
    (foodieqa / "images" / "scan.jpg").write_bytes(b"%PDF-1.4 not a picture")
    good = json.loads((EXAMPLES / "sivqa_tidy.json").read_text(encoding="utf-8"))[0]
    sivqa = [good,
             {**good, "question_id": "no-answer", "answer": None},
             {**good, "question_id": "broken-picture",
              "food_meta": {**good["food_meta"], "food_file": "images/scan.jpg"}},
             {**good, "question_id": "three-choices", "choices": good["choices"][:3], "food_meta": "川菜"},
             {key: value for key, value in good.items() if key != "question_id"}]
    (foodieqa / "sivqa_tidy.json").write_text(json.dumps(sivqa, ensure_ascii=False), encoding="utf-8")

    own = tmp_path / "own"
    shutil.copytree(EXAMPLES / "images", own / "images")
    turns = [{"from": "human", "value": "<image>\n这是什么菜？"}, {"from": "gpt", "value": "北京烤鸭。"}]
    llava = [{"id": "good", "image": "images/peking-duck-0.jpg", "conversations": turns},
             {"id": "empty-answer", "image": "images/peking-duck-0.jpg",
              "conversations": [turns[0], {"from": "gpt", "value": ""}]},
             {"id": "odd-source", "image": "images/peking-duck-0.jpg", "conversations": turns, "source": "web"},
             {"id": "escapes", "image": "../../secret.jpg", "conversations": turns}]
    (own / "data.json").write_text(json.dumps(llava, ensure_ascii=False), encoding="utf-8")
    csv_folder = tmp_path / "csv"
    csv_folder.mkdir()
    (csv_folder / "dishes.csv").write_text("image,question\nimages/a.jpg,这是什么菜？\n", encoding="utf-8")
    return [read_foodieqa_folder(foodieqa), read_own_data(own), read_own_data(csv_folder)]


def report_messages(result, lang: str) -> list[str]:
    from ui.dataset_views import report_table

    table = report_table(result, lang).value
    return [row[3] for row in table["data"]]


def test_the_report_of_a_dataset_with_bad_rows_is_said_in_chinese_on_a_chinese_page(tmp_path):
    results = malformed_datasets(tmp_path)
    problems = [p for result in results for p in result.problems]
    assert len(problems) == 9
    for problem, chinese in zip(problems, [m for r in results for m in report_messages(r, "zh")]):
        assert isinstance(problem.message, Problem), problem  # every row of the report has a key
        assert CHINESE.search(chinese) and english_left(chinese, problem.message) == [], chinese
    assert [m for r in results for m in report_messages(r, "zh")] == [
        "缺少 answer。该行已跳过。",
        "图片 'images/scan.jpg' 不是图片（不是 JPEG、PNG、GIF、WebP、BMP 或 TIFF）。该行已跳过。",
        "food_meta 不是对象，已忽略。",
        "choices 有 3 项，应为 4 项；缺少图片（没有 food_meta.food_file）。该行已跳过。",
        "缺少 question_id，该行记作 sivqa-row4。",
        "第 2 轮（回答）为空。该行已跳过。",
        "source 'web' 未知，已忽略。",
        "图片 '../../secret.jpg' 被拒绝：路径用“..”跳出了数据文件夹。该行已跳过。",
        "dishes.csv 缺少 answer 列（现有的列：image, question）。",
    ]


def test_the_report_on_an_english_page_is_the_english_it_always_was(tmp_path):
    results = malformed_datasets(tmp_path)
    english = [m for r in results for m in report_messages(r, "en")]
    assert english == [str(p.message) for r in results for p in r.problems]
    assert english == [
        "Answer is missing. The row was skipped.",
        "Picture 'images/scan.jpg' is not a picture (not JPEG, PNG, GIF, WebP, BMP or TIFF). The row was skipped.",
        "food_meta is not an object; ignored.",
        "Choices has 3 entries instead of 4; the picture is missing (no food_meta.food_file). The row was skipped.",
        "question_id is missing; the row is called sivqa-row4.",
        "Turn 2 (the answer) is empty. The row was skipped.",
        "Source 'web' is unknown; ignored.",
        "Picture '../../secret.jpg' was refused: it climbs out of the data folder ('..'). The row was skipped.",
        "dishes.csv lacks the column answer (found: image, question).",
    ]


def test_the_files_an_upload_leaves_out_are_said_in_chinese(tmp_path):
    import stat
    import zipfile

    from ui.dataset_views import left_out_sentence

    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("my-dishes/data.json", "[]")
        zf.writestr("../../.bashrc", "echo owned")
        link = zipfile.ZipInfo("my-dishes/images/duck.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    (tmp_path / "pictures").mkdir()
    unpacked = unpack_upload([archive, tmp_path / "pictures"], tmp_path / "upload")
    assert [reason.key for reason in unpacked.skipped] == ["upload_left_out"] * 3
    assert left_out_sentence(unpacked.skipped, "en") == (
        "Some uploaded files were left out: ../../.bashrc: the path leads outside the folder; "
        "my-dishes/images/duck.jpg: symbolic links are not unpacked; pictures: not a regular file")
    chinese = left_out_sentence(unpacked.skipped, "zh")
    assert chinese == ("部分上传的文件未被采用：../../.bashrc：路径指向了文件夹之外；"
                       "my-dishes/images/duck.jpg：符号链接不会被解压；pictures：不是普通文件")
    for reason in unpacked.skipped:
        assert english_left(say(reason, "zh"), reason) == []


def test_a_record_says_where_it_came_from_in_the_page_language(tmp_path):
    from ui.dataset_views import detail_markdown

    foodieqa = malformed_datasets(tmp_path)[0]
    record = foodieqa.records[0]
    assert "sivqa_tidy.json 第 0 行" in detail_markdown(record, "zh")
    assert "sivqa_tidy.json row 0" in detail_markdown(record, "en")
