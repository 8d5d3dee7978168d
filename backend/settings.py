"""The app's settings, from the command line, checked before anything heavy starts."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MIN_PASSWORD_LENGTH = 8
DEFAULT_MAX_UPLOAD_MB = 1024  # one uploaded file: room for a zipped FoodieQA (about 864 MB), not for a disk's worth
# Names a request's Host may always carry: the SSH tunnel's (ssh -L 7860:127.0.0.1:7860 gives
# "localhost:7860" or "127.0.0.1:7860" in the laptop's browser).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # None: the built-in demo model
    engine: str = "auto"  # auto | transformers | lmdeploy
    workdir: Path = Path("runs")
    data: Path | None = None  # a FoodieQA-layout folder for quick examples and the Dataset tab
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    lang: str | None = None  # None: follow the browser
    device: str = "auto"
    auth: tuple[tuple[str, str], ...] = ()  # (user, password) pairs; empty = no login
    kv_cache_share: float = 0.5  # LMDeploy: share of free GPU memory for its KV cache
    tp: int = 1  # LMDeploy: GPUs for tensor parallelism
    queue_size: int = 64  # requests that may wait in Gradio's queue; more are told the app is busy
    allowed_hosts: tuple[str, ...] = ()  # --allowed-host: more names a request's Host (and Origin) may carry
    data_roots: tuple[Path, ...] = ()  # --data-root: folders the Dataset tab may load by path
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB  # the largest file one upload may send

    @property
    def exposed(self) -> bool:
        """A login is required: the app may be reached by people who are not this machine's users."""
        return bool(self.auth)

    def path_roots(self) -> tuple[Path, ...] | None:
        """The folders the Dataset tab may load a server path from, or None for anywhere. With a login
        (the app is exposed) only --data and the --data-root folders; without one, anywhere this user
        can read, unless --data-root names folders."""
        if not self.exposed and not self.data_roots:
            return None
        return tuple(dict.fromkeys([*([self.data] if self.data else []), *self.data_roots]))

    def served_names(self) -> frozenset[str]:
        """Host names a request may carry: loopback, the bound address and --allowed-host. Bound to every
        address (0.0.0.0), the machine's own name and addresses too (anything else: --allowed-host)."""
        names = {*LOOPBACK_NAMES, *(name.lower().rstrip(".") for name in self.allowed_hosts)}
        if self.host in WILDCARD_HOSTS:
            names |= machine_names()
        else:
            names.add(self.host.lower().strip("[]"))
        return frozenset(names)


class _Help(argparse.HelpFormatter):
    """--model's help lists the families, their sizes and the memory a LoRA job on each needs
    (backend/training/memory.py: picker_text), worked out only when the help is shown: it builds the
    models on the meta device, which needs transformers, and app.py should start without that wait."""

    def _expand_help(self, action):
        if action.dest == "model":
            from backend.training.memory import picker_text

            return action.help.replace("{families}", picker_text())
        return super()._expand_help(action)


def parser() -> argparse.ArgumentParser:
    # Named as it was started: `python app.py`, or the foodie-studio command that pip install makes
    started_as = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    p = argparse.ArgumentParser(
        prog="foodie-studio" if started_as == "foodie-studio" else "python app.py",
        description="Foodie Studio: taste and fine-tune food vision-language models in the browser.",
        formatter_class=_Help)
    p.add_argument("--model", help="a local model folder or a hub id; default: the built-in demo model, tiny and "
                   "untrained. Families and sizes: {families}")
    p.add_argument("--engine", choices=["auto", "transformers", "lmdeploy"], default="auto",
                   help="inference engine; auto picks LMDeploy when a GPU and `make gpu-extras` are "
                   "there, transformers otherwise")
    p.add_argument("--workdir", type=Path, default=Path("runs"),
                   help="where models, jobs and caches are kept (default: ./runs)")
    p.add_argument("--data", type=Path, help="a FoodieQA folder (sivqa_tidy.json, images/, ...)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1: reach it through SSH port forwarding)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 7860)")
    p.add_argument("--lang", choices=["zh", "en"], help="UI language (default: the browser's)")
    p.add_argument("--auth", help="require a login, as user:password (or set FOODIE_AUTH); needed "
                   "to bind anything but a loopback address")
    p.add_argument("--auth-file", type=Path, help="a file of user:password lines, one per person")
    p.add_argument("--insecure", action="store_true",
                   help="allow binding a non-loopback address without a login (trusted networks only)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--kv-cache-share", type=float, default=0.5,
                   help="LMDeploy: share of the free GPU memory for its KV cache (default 0.5, "
                   "leaving room for a training job on the same GPU)")
    p.add_argument("--tp", type=int, default=1, help="LMDeploy: GPUs for tensor parallelism (default 1)")
    p.add_argument("--queue-size", type=int, default=64,
                   help="how many requests may wait for their turn (default 64); beyond that a visitor "
                   "is told the app is busy and to try again")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name (or address) the page may be opened by, besides localhost, 127.0.0.1 and "
                   "--host; repeat for several. Requests naming any other Host get 403 (DNS rebinding).")
    p.add_argument("--data-root", action="append", default=[], type=Path, metavar="DIR",
                   help="a folder the Dataset tab may load data from by path; repeat for several. With a "
                   "login (--auth) only --data and these folders can be loaded by path.")
    p.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"the largest file a visitor may upload, in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    return p


def from_args(argv: list[str] | None = None) -> Settings:
    """Parse and check; argparse prints the sentence and exits on anything wrong."""
    p = parser()
    args = p.parse_args(argv)
    if not 1 <= args.port <= 65535:
        p.error(f"--port must be between 1 and 65535, not {args.port}")
    if not 0.05 <= args.kv_cache_share <= 0.95:
        p.error("--kv-cache-share must be between 0.05 and 0.95")
    if args.tp < 1:
        p.error("--tp must be at least 1")
    if args.queue_size < 1:
        p.error("--queue-size must be at least 1")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", args.device):
        p.error(f"--device must be auto, cpu, cuda or cuda:N, not {args.device}")
    if args.data is not None and not args.data.is_dir():
        p.error(f"--data {args.data} is not a folder")
    for root in args.data_root:
        if not root.is_dir():
            p.error(f"--data-root {root} is not a folder")
    if args.max_upload_mb < 1:
        p.error("--max-upload-mb must be at least 1")
    for name in args.allowed_host:
        if not re.fullmatch(r"[A-Za-z0-9.:_-]+|\[[0-9A-Fa-f:.]+\]", name):
            p.error(f"--allowed-host {name!r} is not a host name or an address (no scheme, port or path)")
    auth = read_auth(p, args.auth or os.environ.get("FOODIE_AUTH"), args.auth_file)
    if not is_loopback(args.host) and not auth and not args.insecure:
        p.error(f"--host {args.host} would expose the app beyond this machine without a login. "
                "Give --auth user:password (or FOODIE_AUTH, or --auth-file), use SSH port "
                "forwarding with the default 127.0.0.1, or pass --insecure on a trusted network.")
    return Settings(model=args.model, auth=auth, engine=args.engine, workdir=args.workdir.expanduser().resolve(),
                    data=args.data.resolve() if args.data else None, host=args.host, port=args.port,
                    lang=args.lang, device=args.device, kv_cache_share=args.kv_cache_share, tp=args.tp,
                    queue_size=args.queue_size, allowed_hosts=tuple(name.strip("[]") for name in args.allowed_host),
                    data_roots=tuple(root.expanduser().resolve() for root in args.data_root),
                    max_upload_mb=args.max_upload_mb)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_auth(p: argparse.ArgumentParser, pair: str | None, file: Path | None) -> tuple[tuple[str, str], ...]:
    """(user, password) pairs from --auth / FOODIE_AUTH and --auth-file; argparse errors otherwise."""
    lines = [pair] if pair else []
    if file is not None:
        try:
            lines += [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as err:
            p.error(f"--auth-file {file} cannot be read ({err.strerror})")
    found = []
    for line in lines:
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            p.error("a login must look like user:password, with neither part empty")
        if len(password) < MIN_PASSWORD_LENGTH:
            p.error(f"the password of {user!r} has {len(password)} characters; a login needs at least "
                    f"{MIN_PASSWORD_LENGTH}, since anyone who can reach the page can try to guess it")
        found.append((user, password))
    return tuple(found)


def machine_names() -> set[str]:
    """This machine's name, its fully qualified name and its addresses: what a browser on the network
    may put in Host when the app listens on every address."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    try:  # psutil (installed beside accelerate) knows every interface's address
        import psutil

        names |= {address.address.split("%")[0].lower() for addresses in psutil.net_if_addrs().values()
                  for address in addresses if address.family in (socket.AF_INET, socket.AF_INET6)}
    except ImportError:
        with contextlib.suppress(OSError):
            names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    return {name for name in names if name}
