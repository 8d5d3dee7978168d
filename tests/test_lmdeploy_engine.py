"""The LMDeploy engine's CPU-side logic, against a real server process.

LMDeploy itself needs a GPU; tests/openai_standin.py takes its command line and speaks its API
with a real (tiny) model, so what the app does around LMDeploy runs here for real: starting and
stopping the process, requests with pictures, the stream, adapters by name, a server that dies.
The real LMDeploy runs on the GPU machine: bench/README.md has those figures.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

from backend.inference.engine import GenerationSettings, Turn
from backend.inference.lmdeploy_engine import LMDeployEngine, StreamCut, patch_grid_size, request_body, stream_pieces
from backend.inference.lmdeploy_server import LMDeployServer, ServerError, ServerOptions, convert_adapter
from tests.conftest import EXAMPLES, ROOT
from tests.lmdeploy_shapes import OldStyleVisionModel, image_encoder_class
from tests.test_scoring import make_adapter

STANDIN = (sys.executable, str(ROOT / "tests" / "openai_standin.py"))
PHOTO = str(EXAMPLES / "images" / "yuebing-1.jpg")
QUICK = GenerationSettings(max_new_tokens=12)


def test_the_stream_parser_reads_pieces_and_stops_at_done():
    lines = ['data: {"choices": [{"delta": {"role": "assistant"}}]}', "",
             'data: {"choices": [{"delta": {"content": "锅包"}}]}', ": keep-alive",
             'data: {"choices": [{"delta": {"content": "肉"}}]}', "data: [DONE]",
             'data: {"choices": [{"delta": {"content": "never"}}]}']
    assert list(stream_pieces(iter(lines))) == ["锅包", "肉"]


def test_a_stream_without_its_done_marker_is_cut_not_finished():
    with pytest.raises(StreamCut):
        list(stream_pieces(iter(['data: {"choices": [{"delta": {"content": "锅包"}}]}'])))


def test_a_server_error_event_becomes_an_exception():
    with pytest.raises(RuntimeError, match="LMDeploy: out of memory"):
        list(stream_pieces(iter(['data: {"error": "out of memory"}'])))


def test_greedy_requests_pin_top_k_and_sampling_requests_carry_their_settings():
    greedy = request_body([], GenerationSettings(max_new_tokens=5), "base", stream=True)
    assert greedy["top_k"] == 1 and greedy["temperature"] == 0.0 and greedy["max_completion_tokens"] == 5
    sampled = request_body([], GenerationSettings(temperature=0.7, top_p=0.8), "food", stream=False)
    assert sampled["model"] == "food" and sampled["top_p"] == 0.8 and "top_k" not in sampled


def test_pictures_resized_here_land_on_the_patch_grid_the_server_keeps():
    # Qwen2-VL's rule: round each side to a multiple of 28; over the pixel budget, shrink as a whole.
    assert patch_grid_size(640, 480, 1024 * 768, 28) == (644, 476)
    assert patch_grid_size(1024, 768, 1024 * 768, 28) == (1036, 756)  # rounded up, still within budget
    assert patch_grid_size(4000, 3000, 1024 * 768, 28) == (1008, 756)
    for size in [(644, 476), (1036, 756), (1008, 756)]:  # already on the grid: the server's resize is a no-op
        assert patch_grid_size(*size, 1024 * 768, 28) == size


def test_a_picture_the_grid_rule_refuses_is_sent_as_it_is(tmp_path):
    import base64
    import io

    from PIL import Image

    from backend.inference.lmdeploy_engine import image_url

    Image.new("RGB", (3000, 10), "red").save(tmp_path / "strip.png")  # aspect ratio 300: refused by the rule
    url = image_url(str(tmp_path / "strip.png"), 1024 * 768, multiple=28)
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (3000, 10)


def sent_picture(url: str):
    """The picture a request names, read the way LMDeploy's loader reads a data or file URL."""
    import base64
    import io
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from PIL import Image

    if url.startswith("data:"):
        return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    return Image.open(url2pathname(urlparse(url).path))


def test_a_picture_the_server_can_use_as_it_is_goes_as_a_file_url_it_reads_back(tmp_path):
    from PIL import Image

    from backend.inference.lmdeploy_engine import picture_reference

    path = tmp_path / "饺子 #1?.jpg"  # characters a raw path would lose in URL parsing
    Image.new("RGB", (640, 480), "orange").save(path)
    url = picture_reference(str(path), 1024 * 768, multiple=28)
    assert url.startswith("file://")
    assert sent_picture(url).size == (640, 480) and sent_picture(url).filename == str(path)


def test_pictures_the_server_would_see_differently_are_made_ready_here(tmp_path):
    from PIL import Image

    from backend.inference.lmdeploy_engine import picture_reference

    Image.new("RGB", (2048, 1536), "red").save(tmp_path / "large.jpg")  # over the budget
    Image.new("RGB", (1020, 770), "red").save(tmp_path / "rounds-over.jpg")  # the grid's rounding passes it
    rotated = Image.new("RGB", (640, 480), "red")
    exif = rotated.getexif()
    exif[0x0112] = 6  # "turn 90° to show": LMDeploy would not
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    for name, size in [("large.jpg", (1036, 756)), ("rounds-over.jpg", (1008, 756)), ("rotated.jpg", (476, 644))]:
        url = picture_reference(str(tmp_path / name), 1024 * 768, multiple=28)
        assert url.startswith("data:image/jpeg"), name
        assert sent_picture(url).size == size, name
    # without a patch grid (other model families) only the budget and the rotation matter
    assert picture_reference(str(tmp_path / "rounds-over.jpg"), 1024 * 768).startswith("file://")


def test_a_file_that_is_no_picture_gets_the_sentence_not_a_file_url(tmp_path):
    from backend.images import ImageError
    from backend.inference.lmdeploy_engine import picture_reference

    (tmp_path / "menu.jpg").write_text("not a picture")
    with pytest.raises(ImageError, match="not a picture"):
        picture_reference(str(tmp_path / "menu.jpg"), 1024 * 768, multiple=28)


def test_a_missing_lmdeploy_is_a_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr("backend.inference.lmdeploy_server.default_command", lambda workdir: None)
    with pytest.raises(ServerError, match="make gpu-extras"):
        LMDeployServer(ServerOptions(model="x", workdir=tmp_path))


# What LMDeploy 0.18 wrote on the H100 (2026-12-08) when its engine worker could not start, shortened: the
# cause comes first, the server's last words only say that the worker is gone.
DIED_FOR_A_KERNEL_PACKAGE = """\
2026-12-08 00:55:34,089 - lmdeploy - WARNING - archs.py:40 - Fallback to pytorch engine because turbomind is not built.
2026-12-08 00:55:57,577 - lmdeploy - ERROR - base.py:54 - ImportError: Qwen3-Next cuda support requires \
https://github.com/fla-org/flash-linear-attention.
2026-12-08 00:55:57,578 - lmdeploy - ERROR - base.py:55 - <Model> check failed!
lmdeploy.pytorch.engine.mp_engine.zmq_rpc.RPCServerDeadError: PyTorch ZMQ engine process is not alive.
"""
DIED_ON_A_CONFIG = """\
  File "/tmp/site/lmdeploy/pytorch/models/patch.py", line 184, in _get_model_class
AttributeError: 'Qwen3Config' object has no attribute 'language_config'
2026-12-08 00:58:58,057 - lmdeploy - ERROR - zmq_rpc.py:62 - PyTorch ZMQ engine process is not alive.
lmdeploy.pytorch.engine.mp_engine.zmq_rpc.RPCServerDeadError: PyTorch ZMQ engine process is not alive.
"""


def test_a_server_that_dies_while_starting_is_reported_by_its_first_error(tmp_path):
    """Two failed starts into one log (it is appended to): each is reported by its own cause."""
    for log_text, cause in ((DIED_FOR_A_KERNEL_PACKAGE, "ImportError: Qwen3-Next cuda support requires"),
                            (DIED_ON_A_CONFIG, "AttributeError: 'Qwen3Config' object has no attribute")):
        script = tmp_path / "dying.py"
        script.write_text(f"import sys\nsys.stdout.write({log_text!r})\nsys.exit(1)\n")
        server = LMDeployServer(ServerOptions(model="m", workdir=tmp_path, command=(sys.executable, str(script))))
        with pytest.raises(ServerError) as died:
            server.start(timeout=60)
        first_line = str(died.value).splitlines()[0]
        assert first_line.startswith("LMDeploy stopped while starting (exit 1): " + cause), first_line
        assert "not alive" in str(died.value)  # the log's end follows, as it was


def test_impossible_server_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="KV-cache share"):
        ServerOptions(model="x", workdir=tmp_path, cache_share=1.5)


def test_the_weights_dtype_is_passed_on_since_lmdeploy_misreads_transformers_5_configs(tmp_path):
    import json

    def dtype_argument(config: dict) -> str:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
        args = LMDeployServer(ServerOptions(model=str(folder), workdir=tmp_path, command=STANDIN)).arguments()
        return args[args.index("--dtype") + 1]

    assert dtype_argument({"dtype": "bfloat16"}) == "bfloat16"  # transformers 5 writes this key only
    assert dtype_argument({"torch_dtype": "float16"}) == "float16"
    assert dtype_argument({"text_config": {"dtype": "bfloat16"}}) == "bfloat16"
    assert dtype_argument({"dtype": "float32"}) == "auto"  # LMDeploy's own choice (fp16) for fp32 weights
    assert dtype_argument({}) == "auto"


def test_scoring_settings_reach_the_server_command_line(tmp_path):
    def arguments(**options) -> list[str]:
        return LMDeployServer(ServerOptions(model="m", workdir=tmp_path, command=STANDIN, **options)).arguments()

    args = arguments(max_prefill_tokens=16384, preprocess_threads=4)
    assert args[args.index("--max-prefill-token-num") + 1] == "16384"
    assert args[args.index("--preprocess-threads") + 1] == "4"
    assert "--preprocess-threads" not in arguments(preprocess_threads=1)  # LMDeploy's own CLI, unchanged
    assert "--keep-picture-dtype" in arguments(cast_pictures=False) and "--keep-picture-dtype" not in args
    with pytest.raises(ValueError, match="at least one thread"):
        ServerOptions(model="m", workdir=tmp_path, preprocess_threads=0)


def test_the_launcher_takes_its_own_option_and_passes_the_rest_to_lmdeploy():
    from backend.inference.lmdeploy_launch import split_flag, split_threads

    assert split_threads(["serve", "api_server", "m", "--preprocess-threads", "6", "--tp", "1"]) == \
        (6, ["serve", "api_server", "m", "--tp", "1"])
    assert split_threads(["--preprocess-threads=3", "serve"]) == (3, ["serve"])
    assert split_threads(["serve", "api_server", "m"]) == (1, ["serve", "api_server", "m"])
    assert split_flag(["serve", "--keep-picture-dtype", "m"], "--keep-picture-dtype") == (True, ["serve", "m"])


def test_the_launcher_widens_only_the_pytorch_backends_preprocessing_pool():
    """The pool has one thread until widened; TurboMind's, which also runs its vision model, stays."""
    from backend.inference.lmdeploy_launch import adapt_image_encoder

    Encoder = image_encoder_class()
    assert Encoder("m", "pytorch").executor._max_workers == 1
    adapt_image_encoder(Encoder, 6)
    assert Encoder("m", "pytorch", None, backend_config=None).executor._max_workers == 6
    assert Encoder("m", "turbomind").executor._max_workers == 1


def test_the_launcher_hands_pictures_over_in_the_models_dtype_with_the_values_its_forward_would_use():
    import torch

    from backend.inference.lmdeploy_launch import adapt_image_encoder

    Encoder = image_encoder_class()
    adapt_image_encoder(Encoder, 1)
    original = OldStyleVisionModel().preprocess([])[-1]["content"][0]
    handed = Encoder("m", "pytorch").model.preprocess([])[-1]["content"][0]
    assert original["pixel_values"].dtype == torch.float32
    assert handed["pixel_values"].dtype == torch.bfloat16
    # the forward casts to the model's dtype itself (`pixel_values.to(dtype)`): the same values
    assert torch.equal(handed["pixel_values"], original["pixel_values"].to(torch.bfloat16))
    assert torch.equal(handed["image_grid_thw"], original["image_grid_thw"])  # not a picture: left alone
    turbomind = Encoder("m", "turbomind").model.preprocess([])[-1]["content"][0]
    assert turbomind["pixel_values"].dtype == torch.float32
    kept = image_encoder_class()
    adapt_image_encoder(kept, 1, cast=False)
    assert kept("m", "pytorch").model.preprocess([])[-1]["content"][0]["pixel_values"].dtype == torch.float32
    newer_style = image_encoder_class(new_style_preprocess=True)  # LMDeploy casts those itself
    adapt_image_encoder(newer_style, 1)
    assert newer_style("m", "pytorch").model.preprocess([])[-1]["content"][0]["pixel_values"].dtype == torch.float32


def test_adapter_keys_are_renamed_for_lmdeploy(tiny_models, tmp_path):
    from safetensors.torch import load_file

    source = make_adapter(tiny_models["qwen2_vl"], tmp_path / "a", 1)
    converted = convert_adapter(tmp_path / "a", tmp_path / "converted")
    keys = list(load_file(str(converted / "adapter_model.safetensors")))
    assert keys and all("language_model" not in k for k in keys)
    assert any(k.startswith("base_model.model.model.layers.") for k in keys), keys[:3]
    assert source


@pytest.fixture()
def engine(tiny_models, tmp_path):
    server = LMDeployServer(ServerOptions(model=str(tiny_models["qwen2_vl"]), workdir=tmp_path, command=STANDIN))
    server.start(timeout=120)
    engine = LMDeployEngine(server, max_pixels=112 * 112)
    yield engine
    engine.close()


def test_chat_with_a_photo_streams_and_matches_a_batched_answer(engine):
    turns = [Turn("user", "这是什么菜？", (PHOTO,))]
    pieces = list(engine.stream(turns, QUICK))
    assert len(pieces) > 1
    assert "".join(pieces) == engine.generate_batch([turns], QUICK)[0]
    assert "--server-name" in engine.server.arguments() and "127.0.0.1" in engine.server.arguments()


def test_a_picture_sent_as_a_file_url_is_the_very_picture_the_server_answers_about(engine, tiny_models, tmp_path):
    from PIL import Image

    from backend.inference.transformers_engine import TransformersEngine
    from backend.models.loading import load, resolve

    photo = tmp_path / "small dish.png"
    Image.open(PHOTO).convert("RGB").resize((100, 90)).save(photo)  # within the engine's 112x112 budget
    turns = [Turn("user", "这是什么菜？", (str(photo),))]
    assert engine._messages(turns)[0]["content"][0]["image_url"]["url"].startswith("file://")
    # the stand-in answers with a transformers engine; the same one here, on the file itself, must
    # agree token for token (the same picture resized and re-encoded as JPEG gives another answer)
    here = TransformersEngine(load(resolve(str(tiny_models["qwen2_vl"]))))
    assert engine.generate_batch([turns], QUICK)[0] == here.generate_batch([turns], QUICK)[0]


def test_an_adapter_is_served_by_name_beside_the_base(engine, tiny_models, tmp_path):
    turns = [Turn("user", "这是什么菜？", (PHOTO,))]
    base = engine.generate_batch([turns], QUICK)[0]
    engine.load_adapter("tuned", make_adapter(tiny_models["qwen2_vl"], tmp_path / "t", 5))
    assert "--adapters" in engine.server.arguments()
    answers = {row: "" for row in (0, 1)}
    for row, piece in engine.stream_many([(turns, None), (turns, "tuned")], QUICK):
        answers[row] += piece
    assert answers[0] == base and answers[1] != base
    with pytest.raises(ValueError, match="no adapter named"):
        engine.generate_batch([turns], QUICK, adapter="other")


def test_a_checkpoint_that_trained_more_than_lora_is_served_merged_by_a_server_of_its_own(engine, tiny_models,
                                                                                          tmp_path):
    """LMDeploy applies LoRA on the language model only: a trained projector goes through a merged model
    (backend/inference/merged.py), and the page says so beside the checkpoint's name."""
    from backend.catalog import ModelChoice
    from backend.inference.transformers_engine import TransformersEngine
    from backend.models.loading import load, resolve
    from tests.test_what_trains import train_choice
    from ui.i18n import model_label

    files = train_choice(tiny_models["qwen2_vl"], "language-lora+projector", tmp_path / "projector")
    turns = [Turn("user", "这是什么菜？", (PHOTO,))]
    base = engine.generate_batch([turns], QUICK)[0]
    engine.load_adapter("projector", str(files.adapter))
    assert engine.serves_merged("projector") and "--adapters" not in engine.server.arguments()
    tuned = engine.generate_batch([turns], QUICK, adapter="projector")[0]
    # the job's own end-of-job merge, in this process, answers the same
    assert tuned == TransformersEngine(load(resolve(str(files.merged)))).generate_batch([turns], QUICK)[0] != base
    assert engine.generate_batch([turns], QUICK)[0] == base  # the base is still the base
    choice = ModelChoice("job:final", files.adapter, job_name="job", step=4, final=True,
                         trains="language-lora+projector")
    assert model_label(choice, "en", engine.name) == "job · final · LoRA + projector · merged for LMDeploy"
    assert model_label(choice, "en", "transformers") == "job · final · LoRA + projector"


def test_a_server_that_dies_is_a_sentence_and_comes_back(engine):
    turns = [Turn("user", "Hello?")]
    before = engine.generate_batch([turns], QUICK)[0]
    os.killpg(engine.server.process.pid, signal.SIGKILL)
    engine.server.process.wait(10)
    with pytest.raises(RuntimeError, match=r"stopped .* being restarted"):
        list(engine.stream(turns, QUICK))
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not engine.server.alive():
        time.sleep(0.5)
    engine.server.wait_ready(120)
    assert engine.generate_batch([turns], QUICK)[0] == before


def test_a_server_that_dies_mid_answer_is_a_sentence_after_the_pieces_already_sent(tiny_models, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("STANDIN_PIECE_DELAY_S", "0.2")  # 40 pieces: the answer takes ~8 s
    server = LMDeployServer(ServerOptions(model=str(tiny_models["qwen2_vl"]), workdir=tmp_path, command=STANDIN))
    server.start(timeout=120)
    engine = LMDeployEngine(server, max_pixels=112 * 112)
    try:
        stream = engine.stream([Turn("user", "Hello?")], GenerationSettings(max_new_tokens=40))
        received = [next(stream)]
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        with pytest.raises(RuntimeError, match=r"stopped .* being restarted"):
            received += list(stream)
        assert received[0] and len(received) < 40  # what came before the death stays with the caller
    finally:
        engine.close()
    # The death started a restart; closing the engine meanwhile leaves no server running (one used to
    # outlive the test run, and would outlive the app holding GPU memory).
    engine._restarting.join(180)
    assert not engine._restarting.is_alive() and not server.alive()


def test_auto_picks_transformers_without_a_gpu_and_says_why(tmp_path):
    import torch

    from backend.services import choose_engine
    from backend.settings import Settings

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the CPU-side choice cannot be seen here")
    name, why = choose_engine(Settings(workdir=tmp_path), source=None)
    assert name == "transformers" and "no GPU" in why


def test_asking_for_lmdeploy_without_a_gpu_stops_startup_with_a_sentence(tmp_path):
    import subprocess

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = subprocess.run([sys.executable, "app.py", "--engine", "lmdeploy", "--workdir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "needs a GPU" in result.stderr


def test_scoring_through_lmdeploy_asks_every_question_at_once_and_keeps_their_order(engine, monkeypatch):
    """Batches of the Compare tab's batch size would each wait for their slowest answer; LMDeploy
    batches requests itself, so scoring hands it every question and counts answers as they come."""
    from backend.data import read_bundled_sample
    from backend.evaluation.multiple_choice import prompt_turn
    from backend.evaluation.scoring import SCORING_SETTINGS, scorable, score

    records = scorable([r for r in read_bundled_sample().records if r.task in ("sivqa", "textqa")])[:8]
    expected = [engine.generate_batch([[prompt_turn(r, "zh")]], SCORING_SETTINGS)[0].strip() for r in records]

    def no_fixed_batches(*args, **kwargs):
        raise AssertionError("scoring through LMDeploy went through fixed batches")

    monkeypatch.setattr(engine, "generate_batch", no_fixed_batches)
    progress = []
    run = score(engine, records, batch_size=3, on_progress=lambda done, total: progress.append((done, total)))
    assert [q.record_id for q in run.questions] == [r.id for r in records]
    assert [q.reply for q in run.questions] == expected
    assert progress == [(3, 8), (6, 8), (8, 8)]


def test_the_launcher_hands_lmdeploys_cli_its_own_arguments_in_a_real_process(tmp_path):
    """The launcher as the app runs it (a script, in a child process), with a stand-in `lmdeploy`
    package (the real one needs a GPU stack): LMDeploy's CLI gets its arguments without ours, its
    ImageEncoder gets the wider pool and hands pictures over in bf16, and the launcher's folder
    shadows no module."""
    import json
    import subprocess
    import textwrap

    from backend.inference.lmdeploy_server import LAUNCH_SCRIPT

    package = tmp_path / "lmdeploy"
    (package / "vl").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "vl" / "__init__.py").write_text("")
    (package / "vl" / "engine.py").write_text("from tests.lmdeploy_shapes import image_encoder_class\n"
                                              "ImageEncoder = image_encoder_class()\n")
    (package / "cli.py").write_text(textwrap.dedent("""
        import importlib.util, json, sys
        from lmdeploy.vl.engine import ImageEncoder

        def run():
            encoder = ImageEncoder("m", "pytorch")
            handed = encoder.model.preprocess([])[-1]["content"][0]["pixel_values"]
            print(json.dumps({"argv": sys.argv, "workers": encoder.executor._max_workers, "dtype": str(handed.dtype),
                              "shadowed": importlib.util.find_spec("lmdeploy_server") is not None}))
    """))
    result = subprocess.run([sys.executable, str(LAUNCH_SCRIPT), "serve", "api_server", "m",
                             "--preprocess-threads", "8", "--tp", "1"],
                            capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)])))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"argv": ["lmdeploy", "serve", "api_server", "m", "--tp", "1"], "workers": 8,
                    "dtype": "torch.bfloat16", "shadowed": False}
    assert "preprocessed in 8 threads" in result.stderr and "handed to the engine in torch.bfloat16" in result.stderr


def test_scoring_in_the_compare_tab_says_why_when_the_server_dies_and_the_app_goes_on(engine, tmp_path):
    import gradio as gr

    from backend.services import Services
    from backend.settings import Settings
    from backend.training.jobs import JobStore
    from ui.compare_scores import run_scores

    services = Services(Settings(workdir=tmp_path), None, engine, 112 * 112, [], JobStore(tmp_path))
    os.killpg(engine.server.process.pid, signal.SIGKILL)
    engine.server.process.wait(10)
    with pytest.raises(gr.Error, match=r"stopped .* being restarted"):
        run_scores("base", "base", "bundled sample (all)", "zh", 16, services, progress=lambda *a, **k: None)
    engine.server.wait_ready(120)  # and it comes back: the next scoring run works
    summary = run_scores("base", "base", "bundled sample (all)", "zh", 16, services,
                         progress=lambda *a, **k: None)[0]
    assert "bundled sample (all)" in summary


def test_auto_falls_back_to_transformers_when_lmdeploy_cannot_start(tiny_models, tmp_path, monkeypatch, caplog):
    """A GPU box whose LMDeploy cannot serve the model (Qwen3.5 without flash-linear-attention, seen on the
    H100): with auto the app still starts, on transformers, and its log says why; asked for by name, it
    stops with the cause. (No GPU here: the choice choose_engine makes on a GPU box is given.)"""
    from backend import services
    from backend.inference import lmdeploy_server
    from backend.inference.transformers_engine import TransformersEngine
    from backend.models.loading import ModelLoadError, resolve
    from backend.settings import Settings

    script = tmp_path / "dying.py"
    script.write_text(f"import sys\nsys.stdout.write({DIED_FOR_A_KERNEL_PACKAGE!r})\nsys.exit(1)\n")
    monkeypatch.setattr(lmdeploy_server, "default_command", lambda workdir: (sys.executable, str(script)))
    source = resolve(str(tiny_models["qwen2_vl"]))
    settings = Settings(workdir=tmp_path, device="cpu")
    monkeypatch.setattr(services, "choose_engine", lambda *_: ("lmdeploy", "auto: a GPU and LMDeploy are present"))
    with caplog.at_level("WARNING", logger="backend.services"):
        engine, _ = services.build_engine(settings, source)
    assert isinstance(engine, TransformersEngine)
    assert "so transformers does" in caplog.text and "flash-linear-attention" in caplog.text
    monkeypatch.setattr(services, "choose_engine", lambda *_: ("lmdeploy", "asked for with --engine lmdeploy"))
    with pytest.raises(ModelLoadError, match="ImportError: Qwen3-Next cuda support"):
        services.build_engine(settings, source)
