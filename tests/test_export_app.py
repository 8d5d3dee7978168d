"""Export through the running app (gradio_client only): a demo job trained in the Train tab, its final
adapter exported as the Export button does it, the zip downloaded from the page; a folder outside the
work folder refused with a sentence, and the app still serving."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from gradio_client import Client

from tests.test_train_compare_e2e import wait_for


def test_export_gives_the_adapter_as_a_zip_to_download_and_refuses_a_folder_outside(app_server, demo_workdir):
    from backend.training.job_form import FIELDS
    from backend.training.spec import PRESETS, JobSpec

    client = Client(app_server.url, verbose=False)
    values = dict(((f, PRESETS["demo-cpu"].get(f, getattr(JobSpec(), f))) for f in FIELDS), epochs=2, save_every=0)
    out = client.predict("demo", "demo-cpu", "to-export", "", *(values[f] for f in FIELDS), api_name="/train_start")
    job_id = out[1]["value"] if isinstance(out[1], dict) else out[1]
    assert wait_for(client, job_id)["state"] == "succeeded"

    words, download = client.predict(f"{job_id}:final", ["adapter", "zip"], "", api_name="/train_export")
    folder = demo_workdir / "exports" / f"{job_id}-final"
    assert f"{job_id}-final" in words and "zip" in words
    downloaded = Path(download["value"] if isinstance(download, dict) else download)
    assert downloaded.name == f"{job_id}-final-adapter.zip" and downloaded.read_bytes() == \
        (folder / downloaded.name).read_bytes()
    with zipfile.ZipFile(downloaded) as archive:
        weights = archive.read(f"{job_id}-final-adapter/adapter_model.safetensors")
        card = archive.read(f"{job_id}-final-adapter/README.md").decode()
    assert weights == (demo_workdir / "jobs" / job_id / "adapter" / "adapter_model.safetensors").read_bytes()
    assert "Foodie Studio's bundled dishes" in card and "Noto Color Emoji" in card

    with pytest.raises(Exception, match="would lead elsewhere"):
        client.predict(f"{job_id}:final", ["adapter"], "../../elsewhere", api_name="/train_export_data")
    written = client.predict(f"{job_id}:final", ["adapter"], "by-api", api_name="/train_export_data")
    assert written["adapter"] == str(demo_workdir.resolve() / "exports" / "by-api" / "adapter")
    assert written["zip"] is None and written["merged"] is None
    assert not (demo_workdir.parent / "elsewhere").exists()
    assert client.predict(job_id, api_name="/train_status")["state"] == "succeeded"
