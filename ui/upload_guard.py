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
the app also has Gradio delete its cache on shutdown (gr.Blocks(delete_cache=...)).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Callable
from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

log = logging.getLogger(__name__)

COOKIE = "foodie_visitor"
REFUSED = "This file was uploaded by another visitor."
_FILE_ROUTE = re.compile(r"/file[=/](.+)$")  # /gradio_api/file=<path> and the older /file/<path>
_VISITOR = re.compile(r"^[A-Za-z0-9_-]{32}$")


class UploadGuard:
    """A plain ASGI middleware (no buffering of other responses: streams stay streams)."""

    def __init__(self, app, upload_dir: str, app_made: Callable[[str], bool]) -> None:
        self.app = app
        self.upload_dir = os.path.realpath(upload_dir)
        self.app_made = app_made  # whether the app has already put this path on a page itself
        self.owners: dict[str, set[str]] = {}  # real path of an upload -> visitors who uploaded it

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        visitor = _visitor_cookie(scope)
        new_visitor = None if visitor else secrets.token_urlsafe(24)
        visitor = visitor or new_visitor
        wanted = _FILE_ROUTE.search(scope["path"])
        if wanted:
            owners = self.owners.get(os.path.realpath(os.path.abspath(wanted.group(1))))
            if owners is not None and visitor not in owners:
                await PlainTextResponse(REFUSED, status_code=403)(scope, receive, send)
                return
        is_upload = scope["method"] == "POST" and scope["path"].endswith("/upload")
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

        await self.app(scope, receive, watch)

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
            if real in self.owners:
                self.owners[real].add(visitor)  # the same photo from several visitors
            elif not self.app_made(str(path)):
                self.owners[real] = {visitor}


def middleware(page) -> Middleware:
    """For page.launch(app_kwargs={"middleware": [...]}), `page` being the gr.Blocks."""

    def app_made(path: str) -> bool:
        return any(path in getattr(block, "keep_in_cache", ()) or path in getattr(block, "temp_files", ())
                   for block in list(page.blocks.values()))

    return Middleware(UploadGuard, upload_dir=page.GRADIO_CACHE, app_made=app_made)


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
