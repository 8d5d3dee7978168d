"""Foodie Studio: taste and fine-tune food vision-language models in the browser.

    python app.py                                   # the built-in demo model, on CPU or GPU
    python app.py --model Qwen/Qwen2-VL-2B-Instruct # a real model (a hub id or a local folder)
    python app.py --help

command line -> settings -> services (model, engine, examples) -> UI -> launch on 127.0.0.1.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import sys

from backend import services as services_module
from backend.allocators import arrow_on_system_malloc, limit_malloc_arenas
from backend.bundled import EXAMPLES_DIR
from backend.data.library import clear_uploads
from backend.models.loading import ModelLoadError
from backend.settings import from_args
from backend.taste_notes import PHOTOS
from backend.workdir_lock import WorkdirBusy, WorkdirUnusable, hold

log = logging.getLogger("foodie_studio")


def tunnel_hint(host: str, port: int) -> str:
    if host not in ("127.0.0.1", "localhost", "::1"):
        return f"Foodie Studio is listening on http://{host}:{port}"
    return (f"Foodie Studio is running at http://127.0.0.1:{port}\n"
            f"From your laptop, forward the port and open that address there:\n"
            f"    ssh -L {port}:127.0.0.1:{port} {getpass.getuser()}@{socket.gethostname()}")


def listen_problem(host: str, port: int) -> str | None:
    """Why the app could not listen on host:port, or None. Asked before the model loads (a minute for
    a real one), so a taken port is said at once, not found by Gradio at the end."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no owner
            probe.bind(address)
    except OSError as err:
        return port_sentence(host, port, err.strerror or str(err))
    return None


def port_sentence(host: str, port: int, reason: str) -> str:
    return (f"Cannot listen on {host}:{port} ({reason}). Another program, or another Foodie Studio with its own "
            f"--workdir, may be using that port: stop it, or give this one another, e.g. --port {port + 1}.")


def served_folders(services) -> list[str]:
    """Folders whose pictures the page may show: the examples, --data, the work folder's cache
    (thumbnails and previews) and the taste notes' photos (everyone's, as the notes are). Nothing
    else on the disk is served: not the rest of the work folder (jobs, logs, uploaded data sets),
    nor Gradio's upload folder, which is served only to each file's uploader (ui/upload_guard.py)."""
    folders = {str(ex.image.parent) for ex in services.examples}
    folders.add(str(services.settings.workdir / "cache"))
    folders.add(str(services.notes.folder / PHOTOS))
    if services.settings.data is not None:
        folders.add(str(services.settings.data))
    folders.add(str(EXAMPLES_DIR))
    return sorted(folders)


def main(argv: list[str] | None = None) -> int:
    limit_malloc_arenas()  # before any thread starts, and before pyarrow loads (backend/allocators.py says why)
    arrow_on_system_malloc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = from_args(argv)
    try:
        lock = hold(settings.workdir, f"http://{settings.host}:{settings.port}")  # held until the app exits
    except (WorkdirBusy, WorkdirUnusable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    problem = listen_problem(settings.host, settings.port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        lock.close()
        return 4
    # Uploads go under the work folder like everything else the app writes, beside its cache (not
    # in it: the cache is served to everyone, uploads only to their uploader). The lock makes the
    # folder this app's alone, so it is emptied at start (a killed run's photos, whose owners
    # nobody remembers any more) and at exit.
    uploads = None
    clear_uploads(settings.workdir)  # unpacked data uploads of an earlier run: their visitors are gone
    if "GRADIO_TEMP_DIR" not in os.environ:
        uploads = settings.workdir / "gradio-uploads"
        shutil.rmtree(uploads, ignore_errors=True)
        os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    # SIGTERM (systemd, kill, a test harness) shuts down like Ctrl-C, through the finally below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        services = services_module.start(settings)
    except ModelLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from backend.training.supervisor import Supervisor
    from ui import request_guard, upload_guard
    from ui.app import CSS, build, page_js  # gradio loads only once the model is known to be good

    # Training runs in a worker process beside the app, restarted within seconds whenever it exits
    # (backend/training/supervisor.py); it exits with the app, and its jobs keep running and are
    # adopted by the next worker (backend/training/worker.py).
    worker = Supervisor(settings.workdir)
    worker.start()
    services.worker = worker
    try:
        page, i18n = build(services)
        # Past queue_size waiting requests, Gradio refuses new ones with its own busy message (the
        # browser: "This application is currently busy. Please try again."; gradio_client: QueueError).
        page.queue(default_concurrency_limit=4, max_size=settings.queue_size)
        # The front door (ui/request_guard.py) stands before everything: Host pinning, origins,
        # login attempts; the upload guard serves each upload to its uploader alone.
        door = request_guard.DoorRules(hosts=settings.served_names(), login_required=settings.exposed,
                                       trusted=frozenset(name.lower().rstrip(".") for name in settings.allowed_hosts))
        max_bytes = settings.max_upload_mb * 10**6
        try:
            page.launch(server_name=settings.host, server_port=settings.port, share=False, i18n=i18n,
                        app_kwargs={"middleware": [upload_guard.middleware(page, max_bytes)],
                                    "lifespan": request_guard.lifespan(door)},
                        max_file_size=max_bytes,
                        auth=list(settings.auth) or None, auth_message="Foodie Studio",
                        css=CSS, js=page_js(settings.lang), allowed_paths=served_folders(services),
                        prevent_thread_lock=True, quiet=True,
                        footer_links=[])
        except OSError:  # Gradio's words name its own parameters, not ours
            print(f"error: {port_sentence(settings.host, settings.port, 'taken while the model loaded')}",
                  file=sys.stderr)
            return 4
        print(tunnel_hint(settings.host, settings.port), flush=True)
        page.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        close = getattr(services.engine, "close", None)
        if close:
            close()
        if uploads is not None:
            shutil.rmtree(uploads, ignore_errors=True)
        lock.close()  # the last thing: the work folder is free for another app from here on
    return 0


if __name__ == "__main__":
    sys.exit(main())
