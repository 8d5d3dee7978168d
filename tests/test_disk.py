"""The disk never fills and is cleaned (issue 32): uploads unpacked only as long as they are shown, a
zip bomb loaded three times, saving a set from an upload, the upload size limit, the free-space check
before an unpack, and no temporary file left by an upload that failed on a full disk. Real
`python app.py` processes; full disks are real tmpfs mounts (root only: skipped with the reason
otherwise)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from backend.data import DataError, unpack_upload
from backend.data.split import load_training_set
from backend.disk import tree_size
from tests.conftest import EXAMPLES, AppProcess, own_workdir
from tests.test_dataset_tab import load, rows, save

BOMB_MB = 200


def mount_tmpfs(folder: Path, size: str) -> None:
    """A real small disk at `folder`, or the test is skipped saying why."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8); a full disk cannot be made honestly without it")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def dishes_zip(path: Path, padding_mb: int = 0) -> Path:
    """The bundled FoodieQA sample as an upload, optionally with a member of zeros that deflates
    from `padding_mb` MB to about a thousandth of that: a zip bomb riding on real data."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("sivqa_tidy.json", "mivqa_tidy.json", "textqa_tidy.json"):
            zf.write(EXAMPLES / name, f"my-dishes/{name}")
        for picture in sorted((EXAMPLES / "images").iterdir()):
            zf.write(picture, f"my-dishes/images/{picture.name}")
        if padding_mb:
            with zf.open("my-dishes/images/padding.bin", "w", force_zip64=True) as member:
                block = bytes(2**20)
                for _ in range(padding_mb):
                    member.write(block)
    return path


@pytest.fixture(scope="module")
def disk_app(demo_workdir, tmp_path_factory):
    root = tmp_path_factory.mktemp("disk")
    workdir = own_workdir(demo_workdir, root / "work")
    with AppProcess(["--workdir", str(workdir), "--max-upload-mb", "5"], root / "app.log") as app:
        app.workdir = workdir
        yield app


def test_a_zip_bomb_loaded_three_times_leaves_less_than_one_load_on_disk(disk_app, tmp_path):
    bomb = dishes_zip(tmp_path / "dishes.zip", padding_mb=BOMB_MB)
    assert bomb.stat().st_size < 2 * 2**20 < BOMB_MB * 2**20  # within --max-upload-mb 5
    before = tree_size(disk_app.workdir)
    client = Client(disk_app.url, verbose=False)
    after_each = []
    for _ in range(3):
        loaded = load(client, "upload", files=[str(bomb)])
        assert loaded["summary"].startswith("Read ") and rows(loaded["table"]), loaded["summary"]
        after_each.append(tree_size(disk_app.workdir) - before)
    uploads = disk_app.workdir / "uploads"
    assert len(list(uploads.iterdir())) == 1, "each load replaces this visitor's previous one"
    assert not list(uploads.rglob("padding.bin")), "what no record shows is deleted once read"
    assert max(after_each) < 10 * 2**20 < BOMB_MB * 2**20, after_each
    # the pictures the records show are still there: the detail view can make their previews
    pictures = [p for p in uploads.rglob("*.jpg")]
    assert len(pictures) == len(list((EXAMPLES / "images").glob("*.jpg")))


def test_a_set_saved_from_an_upload_keeps_its_own_pictures_after_the_upload_is_gone(disk_app, tmp_path):
    client = Client(disk_app.url, verbose=False)
    others = set((disk_app.workdir / "uploads").glob("*"))  # other visitors' (an earlier test's)
    load(client, "upload", files=[str(dishes_zip(tmp_path / "dishes.zip"))])
    [upload] = set((disk_app.workdir / "uploads").iterdir()) - others
    saved = save(client, "from-upload", heldout=0.25, accept=True)  # the sample is FoodieQA's
    assert saved["saved"].startswith("Saved **from-upload**"), saved["saved"]
    folder = disk_app.workdir.resolve() / "datasets" / "from-upload"
    manifest = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    assert Path(manifest["image_root"]).is_relative_to(folder / "images")
    load(client, "sample")  # the visitor moves on: the upload's pictures are no longer shown
    assert not upload.exists()
    training = load_training_set(folder)  # what the Train tab reads, pictures included
    assert training.train and all(p.is_file() for s in training.train for p in s.images)


def test_an_upload_over_the_limit_is_refused_with_a_sentence(disk_app):
    with httpx.Client(base_url=disk_app.url, timeout=30) as visitor:
        visitor.get("/")
        refused = visitor.post("/gradio_api/upload", files={"files": ("big.bin", bytes(6 * 10**6))})
    assert refused.status_code == 413 and "one file may have at most 5.0 MB" in refused.text
    assert disk_app.proc.poll() is None


def test_an_unpack_that_would_fill_the_disk_is_refused_before_it_starts(tmp_path):
    disk = tmp_path / "small-disk"
    mount_tmpfs(disk, "24m")
    try:
        with pytest.raises(DataError) as refused:
            unpack_upload([dishes_zip(tmp_path / "dishes.zip", padding_mb=40)], disk / "upload")
        sentence = str(refused.value)
        assert sentence.startswith("Unpacking dishes.zip needs about ") and "which has 25.2 MB free" in sentence
        assert not (disk / "upload").exists() and tree_size(disk) == 0
    finally:
        unmount(disk)


def test_an_upload_that_fails_on_a_full_disk_leaves_no_temporary_file(demo_workdir, tmp_path):
    workdir = own_workdir(demo_workdir, tmp_path / "work")
    uploads = workdir / "gradio-uploads"
    mount_tmpfs(uploads, "16m")
    try:
        with AppProcess(["--workdir", str(workdir)], tmp_path / "app.log") as app, \
                httpx.Client(base_url=app.url, timeout=60) as visitor:
            visitor.get("/")
            # Said up front (Content-Length): refused before a byte is written.
            refused = visitor.post("/gradio_api/upload", files={"files": ("big.bin", bytes(10 * 10**6))})
            assert refused.status_code == 507 and "this upload needs" in refused.text
            # Sent in chunks with no length: Gradio writes until the disk is full, and fails.
            boundary = "foodieboundary"

            def body():
                yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.bin\"\r\n"
                       "Content-Type: application/octet-stream\r\n\r\n").encode()
                for _ in range(24):
                    yield bytes(2**20)
                yield f"\r\n--{boundary}--\r\n".encode()

            try:  # on a connection of its own: the server may reset it
                with httpx.Client(base_url=app.url, cookies=visitor.cookies, timeout=60) as one_off:
                    failed = one_off.post("/gradio_api/upload", content=body(),
                                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
                assert failed.status_code >= 400
            except httpx.TransportError:  # the server closed the connection while the body still came
                pass
            deadline = time.monotonic() + 10  # the guard cleans up once Gradio has given up on the request
            while [p for p in uploads.iterdir() if p.is_file()] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert [p.name for p in uploads.iterdir() if p.is_file()] == [], "Gradio's temporary file is gone"
            assert shutil.disk_usage(uploads).free > 15 * 2**20, "and its space is free again"
            # and the next upload, which fits, works
            fine = visitor.post("/gradio_api/upload", files={"files": ("dish.jpg", b"\xff\xd8small")})
            assert fine.status_code == 200 and Path(fine.json()[0]).is_file()
            assert app.proc.poll() is None
    finally:
        unmount(uploads)
