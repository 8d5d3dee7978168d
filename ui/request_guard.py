"""The front door: the first thing every request meets, before Gradio's own middleware.

- Host pinning (DNS rebinding). A web page the person opens on their laptop while the SSH tunnel is
  up can rebind its own name to 127.0.0.1 and reach this app through the browser; its requests then
  carry the page's name in Host. Only requests whose Host is a name we serve
  (backend/settings.py: Settings.served_names: localhost, 127.0.0.1, ::1, the bound address and
  --allowed-host, with any port, so `ssh -L 9000:127.0.0.1:7860` works too) are answered; any other
  gets 403. Jupyter and TensorBoard check Host for the same reason.
- Origins. A request that carries an Origin (a browser's cross-site fetch, form or preflight) is
  answered only if that origin is the page's own (Origin equal to Host) or a name given with
  --allowed-host; any other gets 403, preflights included. Gradio 6.31 adds its own CORS middleware
  (CustomCORSMiddleware), which answers a preflight itself and, for any Host that is not localhost,
  allows every origin; this guard stands in front of it (see `lifespan`), so what reaches it is
  same-origin or explicitly allowed, and its headers then only repeat that answer.
- Logins, where a login is required: failed attempts are counted per client address, and after
  `MAX_FAILURES` in `WINDOW_S` seconds that address gets 429 (with Retry-After) until the oldest
  failure is a window old. Gradio checks the password itself, in constant time.
- The login page: Gradio 6.31 inlines the whole API description (every endpoint, its parameters)
  into the page it shows before a login, and offers no switch to leave it out. Here that page goes
  out with an empty API description; the real one is served only after a login (/gradio_api/info).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

log = logging.getLogger(__name__)

MAX_FAILURES = 5  # failed logins per client address ...
WINDOW_S = 60.0  # ... within this many seconds, then 429
_CONFIG = re.compile(rb"<script>window\.gradio_config = (.*?);</script>", re.DOTALL)
_API_INFO = re.compile(rb"(<script>window\.gradio_api_info = )(.*?)(;</script>)", re.DOTALL)
_EMPTY_API = json.dumps({"named_endpoints": {}, "unnamed_endpoints": {}}).encode()


@dataclass
class LoginAttempts:
    """Failed logins per client address, in a sliding window."""

    limit: int = MAX_FAILURES
    window_s: float = WINDOW_S
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, deque[float]] = field(default_factory=dict)

    def wait_s(self, address: str) -> float:
        """Seconds until `address` may try again (0: now)."""
        seen = self._recent(address)
        return 0.0 if len(seen) < self.limit else max(1.0, seen[0] + self.window_s - self.clock())

    def failed(self, address: str) -> None:
        self._recent(address).append(self.clock())

    def succeeded(self, address: str) -> None:
        self.failures.pop(address, None)

    def _recent(self, address: str) -> deque[float]:
        seen = self.failures.setdefault(address, deque())
        while seen and seen[0] <= self.clock() - self.window_s:
            seen.popleft()
        if len(self.failures) > 10_000:  # a flood of addresses: forget the quiet ones
            for quiet in [a for a, times in self.failures.items() if not times and a != address]:
                del self.failures[quiet]
        return seen


@dataclass(frozen=True)
class DoorRules:
    hosts: frozenset[str]  # names a request's Host may carry
    trusted: frozenset[str]  # --allowed-host names: an origin of theirs is welcome from any port
    login_required: bool
    attempts: LoginAttempts = field(default_factory=LoginAttempts, compare=False)


def host_name(host: str) -> str:
    """The name part of a Host header: "LocalHost:7860" -> "localhost", "[::1]:7860" -> "::1"."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".")


def _netloc(name: str, port: int | None, scheme: str) -> tuple[str, int]:
    return name, port if port is not None else (443 if scheme == "https" else 80)


def origin_allowed(origin: str, host: str, rules: DoorRules) -> bool:
    """Whether a request from `origin` to `host` is the page's own (or from an --allowed-host)."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
        host_parts = urlsplit(f"{parts.scheme}://{host}")
        host_port = host_parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    name = parts.hostname.rstrip(".")
    if name in rules.trusted:
        return True
    return (name in rules.hosts and host_parts.hostname is not None and
            _netloc(name, origin_port, parts.scheme) ==
            _netloc(host_parts.hostname.rstrip("."), host_port, parts.scheme))


class RequestGuard:
    """A plain ASGI middleware; only the login page's body is buffered (to leave the API out of it)."""

    def __init__(self, app, rules: DoorRules) -> None:
        self.app, self.rules = app, rules

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())}
        host = headers.get("host", "")
        if host_name(host) not in self.rules.hosts:
            await self._refuse(scope, receive, send, 403, f"This server does not answer to the host name "
                               f"{host_name(host)!r}. If that is the name you open it by, start the app with "
                               "--allowed-host and that name.")
            return
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, host, self.rules):
            await self._refuse(scope, receive, send, 403, "Requests from other sites are refused here.")
            return
        if scope["type"] == "http" and self.rules.login_required:
            path = scope.get("path", "").rstrip("/")
            if path.endswith("/login") and scope["method"] == "POST":
                await self._login(scope, receive, send)
                return
            if path == "" and scope["method"] in ("GET", "HEAD"):
                await self._front_page(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, scope, receive, send, status: int, sentence: str, headers=None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await PlainTextResponse(sentence, status_code=status, headers=headers)(scope, receive, send)

    async def _login(self, scope, receive, send) -> None:
        address = (scope.get("client") or ("?", 0))[0]
        wait = self.rules.attempts.wait_s(address)
        if wait:
            log.warning("login refused for %r: %d failed attempts within %.0f s", address,
                        self.rules.attempts.limit, self.rules.attempts.window_s)
            await self._refuse(scope, receive, send, 429, f"Too many failed logins from this address; try again "
                               f"in {wait:.0f} seconds.", headers={"Retry-After": str(int(wait + 0.999))})
            return
        status = 0

        async def watch(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 200:
                    self.rules.attempts.succeeded(address)
                elif 400 <= status < 500:
                    self.rules.attempts.failed(address)
            await send(message)

        await self.app(scope, receive, watch)

    async def _front_page(self, scope, receive, send) -> None:
        """The page as Gradio makes it, without the API description when it is the login page."""
        scope = dict(scope, headers=[(k, v) for k, v in scope["headers"] if k != b"accept-encoding"])
        start, body = None, []

        async def hold(message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body"):
                    await self._send_page(start, b"".join(body), send)
            else:
                await send(message)

        await self.app(scope, receive, hold)

    @staticmethod
    async def _send_page(start: dict, page: bytes, send) -> None:
        config = _CONFIG.search(page)
        try:
            login_page = bool(config and json.loads(config.group(1)).get("auth_required"))
        except ValueError:
            login_page = False
        if login_page:
            page = _API_INFO.sub(lambda m: m.group(1) + _EMPTY_API + m.group(3), page, count=1)
            start = dict(start, headers=[(k, str(len(page)).encode() if k == b"content-length" else v)
                                         for k, v in start["headers"]])
        await send(start)
        await send({"type": "http.response.body", "body": page})


def lifespan(rules: DoorRules):
    """For page.launch(app_kwargs={"lifespan": ...}): puts RequestGuard in front of every middleware.

    Gradio builds its server app inside launch() and then adds its CORS and Brotli middleware in
    front of the ones the app passes (app_kwargs["middleware"]), so a guard passed that way would see
    preflights only after Gradio had answered them. The lifespan runs once the server app exists and
    before it serves any request: it puts the guard first and has Starlette build the middleware
    stack again on the first request."""

    @asynccontextmanager
    async def guard_first(app):
        app.user_middleware.insert(0, Middleware(RequestGuard, rules=rules))
        app.middleware_stack = None  # built for the lifespan call already; rebuilt with the guard first
        yield

    return guard_first
