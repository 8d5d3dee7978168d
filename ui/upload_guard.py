"""Uploaded files are served back only to the browser (or API client) that uploaded them.

Gradio stores an upload at <upload folder>/<sha256(secret seed + content)>/<name> and serves any
file there to whoever asks for /gradio_api/file=<that path>: the path is hard to guess, but once it
leaks (a shared screenshot, a log, a copied link) anyone could fetch the photo. Gradio's file
requests carry no session id (they are plain <img src=...> loads), so the owner is a visitor cookie:
this middleware gives every browser one on its first request (gradio_client keeps cookies from its
first request too), notes which visitor each /upload returned each path to, and refuses file
requests for those paths from anyone else. Files the app itself puts in the cache (example pictures,
thumbnails, a CSV) are not uploads and are served as before. Paths are content hashes, so an upload
of the very bytes and name of such a copy lands on the same path: it stays public (the check below),
or one visitor could lock everyone else out of a picture on the page.

Ownership is kept in memory: after a restart, uploads from before are not guarded, which is why
the app also has Gradio delete its cache on shutdown (gr.Blocks(delete_cache=...)). The same record
keeps a visitor from naming another visitor's upload by its path in an API call (the Dataset tab's
files, a chat photo): `foreign_uploads` lists such paths and the handler refuses them.

Uploads also meet the disk here, before Gradio writes a byte: a file over --max-upload-mb is refused
(413), and so is an upload the disk has no room for (507), each with a sentence. Gradio writes an
upload to a temporary file first and leaves it behind when the write fails (a full disk, a client
that goes away); once no upload is in flight any more, such leftovers are deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

from backend.disk import RESERVE_BYTES, human_size

log = logging.getLogger(__name__)

COOKIE = "foodie_visitor"
REFUSED = "This file was uploaded by another visitor."
_FILE_ROUTE = re.compile(r"/file[=/](.+)$")  # /gradio_api/file=<path> and the older /file/<path>
_VISITOR = re.compile(r"^[A-Za-z0-9_-]{32}$")


class Owners:
    """Who uploaded what: the real path of each upload -> the visitors who sent it. One per app
    process (OWNERS), shared by the middleware and the handlers that take files."""

    def __init__(self) -> None:
        self.paths: dict[str, set[str]] = {}

    def of(self, path: str) -> set[str] | None:
        return self.paths.get(os.path.realpath(os.path.abspath(path)))

    def add(self, real: str, visitor: str) -> None:
        self.paths.setdefault(real, set()).add(visitor)


OWNERS = Owners()


def visitor_of(request) -> str | None:
    """The visitor cookie of a gr.Request (None for a request without one)."""
    try:
        cookies = getattr(request, "cookies", None) or {}
        value = cookies.get(COOKIE) if hasattr(cookies, "get") else None
    except Exception:  # a request rebuilt from the queue without its cookies
        return None
    return value if isinstance(value, str) and _VISITOR.fullmatch(value) else None


def foreign_uploads(paths: Iterable[str], request, owners: Owners = OWNERS) -> list[str]:
    """The paths among `paths` that another visitor uploaded (and this one did not): an API call may
    name any file in Gradio's upload folder, and Gradio lets every upload through."""
    visitor = visitor_of(request)
    return [path for path in paths if (found := owners.of(path)) is not None and visitor not in found]


class UploadGuard:
    """A plain ASGI middleware (no buffering of other responses: streams stay streams)."""

    def __init__(self, app, upload_dir: str, app_made: Callable[[str], bool], owners: Owners = OWNERS,
                 max_bytes: int | None = None) -> None:
        self.app = app
        self.upload_dir = os.path.realpath(upload_dir)
        self.app_made = app_made  # whether the app has already put this path on a page itself
        self.owners = owners
        self.max_bytes = max_bytes
        self.in_flight = 0  # uploads being received now
        self.failed_meanwhile = False  # an upload failed while others were in flight: clean up after them

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        visitor = _visitor_cookie(scope)
        new_visitor = None if visitor else secrets.token_urlsafe(24)
        visitor = visitor or new_visitor
        wanted = _FILE_ROUTE.search(scope["path"])
        if wanted:
            owners = self.owners.of(wanted.group(1))
            if owners is not None and visitor not in owners:
                await PlainTextResponse(REFUSED, status_code=403)(scope, receive, send)
                return
        is_upload = scope["method"] == "POST" and scope["path"].endswith("/upload")
        if is_upload:
            refusal = self._refusal(scope)
            if refusal:
                await refusal(scope, receive, send)
                return
            self.in_flight += 1
        body: list[bytes] = []
        status = 0

        async def watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if new_visitor:
                    MutableHeaders(scope=message).append(
                        "set-cookie", f"{COOKIE}={new_visitor}; Path=/; HttpOnly; SameSite=Lax")
            elif message["type"] == "http.response.body" and is_upload and status == 200:
                body.append(message.get("body", b""))
                if not message.get("more_body"):
                    self._remember(b"".join(body), visitor)
            await send(message)

        if not is_upload:
            await self.app(scope, receive, watch)
            return
        try:
            await self.app(scope, receive, watch)
        finally:
            self.in_flight -= 1
            self.failed_meanwhile |= status != 200
            if self.failed_meanwhile and not self.in_flight:
                self.failed_meanwhile = False
                self._remove_leftovers()

    def _refusal(self, scope) -> PlainTextResponse | None:
        """An upload too large for the limit or for the disk, refused before Gradio writes any of it."""
        length = next((value for name, value in scope.get("headers", ()) if name == b"content-length"), None)
        try:
            size = int(length) if length is not None else 0
        except ValueError:
            size = 0
        if self.max_bytes is not None and size > self.max_bytes + 64 * 1024:  # the form's own bytes aside
            return PlainTextResponse(f"This upload is {human_size(size)}; one file may have at most "
                                     f"{human_size(self.max_bytes)}.", status_code=413)
        try:
            free = shutil.disk_usage(self.upload_dir if os.path.isdir(self.upload_dir)
                                     else os.path.dirname(self.upload_dir)).free
        except OSError:
            return None
        if size + RESERVE_BYTES > free:
            return PlainTextResponse(f"The server's disk has {human_size(free)} free; this upload needs "
                                     f"{human_size(size + RESERVE_BYTES)}. Try again once space is freed.",
                                     status_code=507)
        return None

    def _remove_leftovers(self) -> None:
        """Gradio's temporary upload files (tmpXXXXXXXX at the top of the upload folder) that a failed
        upload left behind; a finished upload has moved its file into a folder of its own."""
        try:
            entries = list(os.scandir(self.upload_dir))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("tmp") and entry.is_file(follow_symlinks=False):
                try:
                    # Emptied first: Gradio may still hold it open after the failure, and an open file's
                    # space comes back only when it is closed, or emptied.
                    os.truncate(entry.path, 0)
                    os.unlink(entry.path)
                    log.info("removed %r, left by a failed upload", entry.name)
                except OSError:
                    pass

    def _remember(self, body: bytes, visitor: str) -> None:
        """The upload route answers with the list of paths it stored."""
        try:
            paths = json.loads(body)
        except ValueError:
            log.warning("an upload answered with something other than JSON; its files are not guarded")
            return
        for path in paths if isinstance(paths, list) else []:
            real = os.path.realpath(str(path))
            if not real.startswith(self.upload_dir + os.sep):
                continue
            # the same photo from several visitors: each owns it; a copy the app shows is nobody's
            if self.owners.of(real) is not None or not self.app_made(str(path)):
                self.owners.add(real, visitor)


def middleware(page, max_bytes: int | None = None) -> Middleware:
    """For page.launch(app_kwargs={"middleware": [...]}), `page` being the gr.Blocks."""

    def app_made(path: str) -> bool:
        return any(path in getattr(block, "keep_in_cache", ()) or path in getattr(block, "temp_files", ())
                   for block in list(page.blocks.values()))

    return Middleware(UploadGuard, upload_dir=page.GRADIO_CACHE, app_made=app_made, owners=OWNERS,
                      max_bytes=max_bytes)


def _visitor_cookie(scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header: treat the request as a new visitor
                return None
            morsel = jar.get(COOKIE)
            if morsel and _VISITOR.fullmatch(morsel.value):
                return morsel.value
    return None
