"""The app as a person runs it: `python app.py` in its own process, spoken to over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time

from gradio_client import Client, handle_file

from tests.conftest import EXAMPLES, ROOT

PHOTO = str(EXAMPLES / "images" / "lanzhou-noodles-1.jpg")


def ask(client: Client, text: str, files: list[str] = (), max_new_tokens: int = 24) -> list[list]:
    """Send one chat message; return every streamed chatbot value, in order."""
    job = client.submit({"text": text, "files": [handle_file(f) for f in files]}, max_new_tokens, 0.0, 0.9,
                        api_name="/chat")
    job.result(timeout=120)
    return [out[0] for out in job.outputs()]


def texts(chatbot: list[dict]) -> list[tuple[str, str]]:
    """(role, text) for each text message of a chatbot value."""
    found = []
    for message in chatbot:
        for part in message["content"]:
            if part.get("type") == "text":
                found.append((message["role"], part["text"]))
    return found


def test_the_page_serves_with_all_four_tabs(app_server):
    import urllib.request

    html = urllib.request.urlopen(app_server.url, timeout=10).read().decode()
    config = urllib.request.urlopen(app_server.url + "config", timeout=10).read().decode()
    assert "Foodie Studio" in html
    for tab in ("tab_chat", "tab_dataset", "tab_train", "tab_compare"):
        assert tab in config


def test_a_photo_question_streams_an_answer(app_server):
    client = Client(app_server.url, verbose=False)
    outputs = ask(client, "这是什么菜？", [PHOTO], max_new_tokens=32)
    answers = [texts(chatbot)[-1] for chatbot in outputs if texts(chatbot)[-1][0] == "assistant"]
    assert len({text for _, text in answers}) > 2, "the answer grows over several updates"
    final = outputs[-1]
    assert final[0]["content"][0]["type"] == "file", "the photo is shown in the conversation"
    assert texts(final)[0] == ("user", "这是什么菜？")
    assert texts(final)[-1][0] == "assistant" and texts(final)[-1][1].strip()


def test_two_visitors_keep_separate_conversations(app_server):
    alice, bob = Client(app_server.url, verbose=False), Client(app_server.url, verbose=False)
    ask(alice, "这是什么菜？", [PHOTO])
    bob_view = ask(bob, "What dish is this?")[-1]
    alice_view = ask(alice, "味道怎么样？")[-1]
    assert [t for r, t in texts(alice_view) if r == "user"] == ["这是什么菜？", "味道怎么样？"]
    assert [t for r, t in texts(bob_view) if r == "user"] == ["What dish is this?"]


def test_a_broken_photo_is_refused_and_the_conversation_survives(app_server, tmp_path):
    client = Client(app_server.url, verbose=False)
    ask(client, "Hello", [PHOTO])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    after = ask(client, "这是什么菜？", [str(broken)])[-1]
    assert [t for r, t in texts(after) if r == "user"] == ["Hello"], "nothing added, nothing lost"
    follow_up = ask(client, "Still there?")[-1]
    assert [t for r, t in texts(follow_up) if r == "user"] == ["Hello", "Still there?"]


def test_an_empty_message_changes_nothing(app_server):
    client = Client(app_server.url, verbose=False)
    assert texts(ask(client, "   ")[-1]) == []


def run_app(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_a_model_folder_that_does_not_exist_stops_startup_with_a_sentence(tmp_path):
    result = run_app("--model", str(tmp_path / "nowhere"), "--workdir", str(tmp_path))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_a_text_only_model_stops_startup_with_a_sentence(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(tmp_path / "m")
    result = run_app("--model", str(tmp_path / "m"), "--workdir", str(tmp_path))
    assert result.returncode == 2
    assert "not a vision-language model" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_port_is_refused_by_the_command_line(tmp_path):
    result = run_app("--port", "70000", "--workdir", str(tmp_path))
    assert result.returncode == 2 and "--port" in result.stderr


def test_startup_prints_the_ssh_forwarding_line(app_server):
    deadline = time.monotonic() + 10
    while "ssh -L" not in app_server.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"ssh -L {app_server.port}:127.0.0.1:{app_server.port}" in app_server.log()


def test_binding_beyond_loopback_needs_a_login(tmp_path):
    result = run_app("--host", "0.0.0.0", "--workdir", str(tmp_path), timeout=60)
    assert result.returncode == 2 and "--auth" in result.stderr and "Traceback" not in result.stderr
    result = run_app("--host", "0.0.0.0", "--auth", "nopassword", "--workdir", str(tmp_path), timeout=60)
    assert result.returncode == 2 and "user:password" in result.stderr


def test_with_auth_the_app_answers_only_after_a_login(demo_workdir, tmp_path):
    from tests.conftest import AppProcess, own_workdir

    workdir = own_workdir(demo_workdir, tmp_path / "work")
    with AppProcess(["--workdir", str(workdir), "--auth", "cook:wok-hei-123"], tmp_path / "auth.log") as app:
        try:
            Client(app.url, verbose=False).predict(api_name="/clear")
            logged_out_worked = True
        except Exception:
            logged_out_worked = False
        assert not logged_out_worked, "an API call without a login must fail"
        client = Client(app.url, auth=("cook", "wok-hei-123"), verbose=False)
        assert texts(ask(client, "Hello")[-1])[0] == ("user", "Hello")
