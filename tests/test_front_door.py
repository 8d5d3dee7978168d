"""Who may talk to the app, and what a logged-in visitor may reach (issue 32), against real
`python app.py` processes: DNS rebinding (Host pinning, origins, CORS), and in exposed mode (a login)
the server-path loader's roots, another visitor's upload, login attempts and the login page."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import httpx
import pytest
from gradio_client import Client

from tests.conftest import EXAMPLES, ROOT, AppProcess, free_port, own_workdir
from tests.test_dataset_tab import LOAD, load
from ui.request_guard import DoorRules, LoginAttempts, host_name, origin_allowed

PASSWORD = "wok-hei-123"

# --- the rules alone -----------------------------------------------------------------------------------


def test_host_names_and_origins_are_read_as_a_browser_sends_them():
    assert host_name("LocalHost:7860") == "localhost" and host_name("[::1]:7860") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name("localhost.:80") == "localhost"
    rules = DoorRules(hosts=frozenset({"localhost", "127.0.0.1", "::1", "studio.lab"}),
                      trusted=frozenset({"studio.lab"}), login_required=False)
    assert origin_allowed("http://localhost:7860", "localhost:7860", rules)  # the page's own
    assert origin_allowed("http://localhost:9000", "localhost:9000", rules)  # ssh -L 9000:127.0.0.1:7860
    assert not origin_allowed("http://localhost:3000", "localhost:7860", rules)  # another page on the laptop
    assert not origin_allowed("http://evil.example", "localhost:7860", rules)
    assert not origin_allowed("null", "localhost:7860", rules)
    assert origin_allowed("https://studio.lab", "127.0.0.1:7860", rules)  # behind a proxy, named on purpose


def test_login_failures_are_counted_per_address_in_a_sliding_minute():
    now = [0.0]
    attempts = LoginAttempts(clock=lambda: now[0])
    for _ in range(5):
        assert attempts.wait_s("10.0.0.1") == 0
        attempts.failed("10.0.0.1")
    assert attempts.wait_s("10.0.0.1") == pytest.approx(60) and attempts.wait_s("10.0.0.2") == 0
    now[0] = 61
    assert attempts.wait_s("10.0.0.1") == 0


def test_a_short_password_stops_the_start_with_a_sentence(tmp_path):
    run = subprocess.run([sys.executable, "app.py", "--workdir", str(tmp_path), "--port", str(free_port()),
                          "--auth", "cook:wok-hei"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "the password of 'cook' has 7 characters; a login needs at least 8" in run.stderr


# --- DNS rebinding: a real app ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pinned_app(demo_workdir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pinned")
    workdir = own_workdir(demo_workdir, root / "work")
    with AppProcess(["--workdir", str(workdir), "--allowed-host", "Studio.Lab"], root / "app.log") as app:
        yield app


def get(app, path: str = "/config", **headers) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{app.port}{path}", headers=headers, timeout=10)


def test_a_forged_host_gets_403_and_the_tunnel_addresses_work(pinned_app):
    port = pinned_app.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.nip.io:{port}", "", f"localhost.evil:{port}"):
        refused = get(pinned_app, Host=host)
        assert refused.status_code == 403, host
        assert "does not answer to the host name" in refused.text and "--allowed-host" in refused.text
    # ssh -L 7860:127.0.0.1:7860 (the browser says localhost or 127.0.0.1), or another local port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost:9000", f"[::1]:{port}", "studio.lab"):
        assert get(pinned_app, Host=host).status_code == 200, host
    # and the whole app works through the tunnel's address, chat included
    client = Client(f"http://localhost:{port}/", verbose=False)
    chatbot = client.predict({"text": "你好", "files": []}, 4, 0.0, 0.9, "base", api_name="/chat")[0]
    assert chatbot[-1]["role"] == "assistant"


def test_cors_answers_only_the_page_itself(pinned_app):
    port = pinned_app.port
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    for origin in ("http://evil.example", f"http://localhost:{port + 1}", "null"):
        asked = httpx.options(f"http://127.0.0.1:{port}/gradio_api/queue/join", timeout=10,
                              headers={"Origin": origin, **preflight})
        assert asked.status_code == 403 and "access-control-allow-origin" not in asked.headers, origin
        assert get(pinned_app, Origin=origin).status_code == 403, origin
    own = f"http://127.0.0.1:{port}"
    answered = get(pinned_app, Origin=own)
    assert answered.status_code == 200 and answered.headers.get("access-control-allow-origin") == own
    assert get(pinned_app, Origin="https://studio.lab").status_code == 200  # --allowed-host


# --- exposed mode: a login ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exposed_app(demo_workdir, tmp_path_factory):
    root = tmp_path_factory.mktemp("exposed")
    workdir = own_workdir(demo_workdir, root / "work")
    allowed = root / "shared-data"
    shutil.copytree(EXAMPLES / "images", allowed / "FoodieQA" / "images")
    for name in ("sivqa_tidy.json", "mivqa_tidy.json", "textqa_tidy.json"):
        shutil.copy(EXAMPLES / name, allowed / "FoodieQA" / name)
    (root / "outside").mkdir()
    shutil.copy(EXAMPLES / "sivqa_tidy.json", root / "outside" / "sivqa_tidy.json")
    args = ["--workdir", str(workdir), "--auth", f"cook:{PASSWORD}", "--data-root", str(allowed)]
    with AppProcess(args, root / "app.log") as app:
        app.allowed, app.outside = allowed, root / "outside"
        yield app


def logged_in(app) -> httpx.Client:
    """A browser-like visitor: logged in, with its own visitor cookie."""
    visitor = httpx.Client(base_url=f"http://127.0.0.1:{app.port}", timeout=30)
    assert visitor.post("/login", data={"username": "cook", "password": PASSWORD}).status_code == 200
    assert visitor.get("/").status_code == 200
    return visitor


def call(visitor: httpx.Client, api: str, *data) -> list:
    """An endpoint through Gradio's HTTP API (POST /gradio_api/call/<api>, then its event stream)."""
    event = visitor.post(f"/gradio_api/call/{api}", json={"data": list(data)}).json()["event_id"]
    stream = visitor.get(f"/gradio_api/call/{api}/{event}").text
    kind = [line for line in stream.splitlines() if line.startswith("event:")][-1]
    payload = [line for line in stream.splitlines() if line.startswith("data:")][-1]
    assert kind == "event: complete", stream[-500:]
    return json.loads(payload[len("data:"):])


def test_a_logged_in_visitor_cannot_load_etc_or_anything_outside_the_data_roots(exposed_app):
    client = Client(exposed_app.url, auth=("cook", PASSWORD), verbose=False)
    for outside in ("/etc", "/etc/passwd", str(exposed_app.outside), str(exposed_app.allowed / ".." / "outside"),
                    "/nowhere/at/all"):
        loaded = load(client, "folder", outside)
        assert loaded["summary"].startswith("⚠️ This source cannot be read: This server loads data by path only "
                                            f"from {exposed_app.allowed}"), loaded["summary"]
        assert "is not inside them" in loaded["summary"]
    # a symbolic link inside the root that leads out is followed first, and refused the same way
    link = exposed_app.allowed / "link-out"
    link.symlink_to(exposed_app.outside)
    assert "is not inside them" in load(client, "folder", str(link))["summary"]
    inside = load(client, "folder", str(exposed_app.allowed / "FoodieQA"))
    assert inside["summary"].startswith("Read ") and "records" in inside["summary"]


def test_a_logged_in_visitor_cannot_use_another_visitors_upload(exposed_app, tmp_path):
    archive = tmp_path / "mine.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(EXAMPLES / "sivqa_tidy.json", "FoodieQA/sivqa_tidy.json")
        for picture in sorted((EXAMPLES / "images").iterdir()):
            zf.write(picture, f"FoodieQA/images/{picture.name}")
    alice, bob = logged_in(exposed_app), logged_in(exposed_app)
    try:
        stored = alice.post("/gradio_api/upload", files={"files": ("mine.zip", archive.read_bytes())}).json()[0]
        upload = {"path": stored, "meta": {"_type": "gradio.FileData"}, "orig_name": "mine.zip"}
        inputs = ("upload", "", [upload], None, None, "")  # source, folder, files, pick, folder files, listing
        mine = dict(zip(LOAD, call(alice, "dataset_load", *inputs)[1:]))  # [0]: the gr.State
        assert mine["summary"].startswith("Read "), mine["summary"]
        theirs = dict(zip(LOAD, call(bob, "dataset_load", *inputs)[1:]))
        assert theirs["summary"].startswith("⚠️ These files were uploaded by another visitor"), theirs["summary"]
        assert bob.get(f"/gradio_api/file={stored}").status_code == 403
        assert alice.get(f"/gradio_api/file={stored}").status_code == 200
    finally:
        alice.close(), bob.close()


def test_the_login_page_does_not_show_the_api(exposed_app):
    page = httpx.get(exposed_app.url, timeout=10, headers={"Accept-Encoding": "br, gzip"}).text
    assert '"auth_required": true' in page or '"auth_required":true' in page
    assert 'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};' in page
    assert "dataset_load" not in page and "train_start" not in page
    assert httpx.get(f"{exposed_app.url}gradio_api/info", timeout=10).status_code == 401
    visitor = logged_in(exposed_app)
    assert "dataset_load" in visitor.get("/").text  # after a login, the page is Gradio's own
    assert "dataset_load" in visitor.get("/gradio_api/info").text
    visitor.close()


def test_login_attempts_are_limited_per_address(exposed_app):
    """Last in this module: it locks 127.0.0.1 out of this app for a minute."""
    codes = [httpx.post(f"{exposed_app.url}login", data={"username": "cook", "password": f"guess-{i}"},
                        timeout=10).status_code for i in range(8)]
    assert codes[:5] == [400] * 5 and codes[5:] == [429] * 3
    locked = httpx.post(f"{exposed_app.url}login", data={"username": "cook", "password": PASSWORD}, timeout=10)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert "Too many failed logins from this address" in locked.text
    assert exposed_app.proc.poll() is None
