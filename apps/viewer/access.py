"""Who may use the viewer and what a request may ask of it.

The viewer serves every slide of a store and runs prompts, so it answers only:

* requests whose ``Host`` is one of its own names (:class:`ViewerAccess.hosts`;
  Starlette's ``TrustedHostMiddleware``), which defeats DNS rebinding;
* state-changing requests from its own page: a ``POST`` whose ``Origin`` (or
  ``Sec-Fetch-Site``) says another site sent it is refused, and its body must be
  JSON, which a cross-site form cannot send without the browser asking first;
* beyond loopback, API calls that carry its token (printed by ``hquery view``):
  the page's URL hands it over once as ``?token=``, which becomes a same-site,
  HTTP-only cookie; scripts send ``Authorization: Bearer TOKEN``.

Every response carries a Content-Security-Policy that runs only the viewer's own
scripts, so a store value that reached the page as markup still could not run.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import json
import secrets
import socket
from collections.abc import Sequence
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
TOKEN_COOKIE = "hquery_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPENSEADRAGON_INLINE_CSS = ("@media (hover: none) {    .openseadragon-canvas:focus {        outline: none !important;"
                            "    }}")
"""The one ``<style>`` OpenSeadragon adds to the page; the policy allows it by its hash and nothing else inline."""


@dataclasses.dataclass(frozen=True)
class ViewerAccess:
    """The viewer's access rules and limits.

    Parameters
    ----------
    hosts
        The ``Host`` names it answers to.
    token
        What every ``/api/`` call must carry, or ``None`` (loopback only).
    max_jobs
        Prompt jobs queued or running at once; one more is refused (HTTP 429) until one ends.
    max_genes
        Genes in one typed list.
    max_body_bytes
        The largest request body.
    job_ttl_s
        How long a finished job's status is kept.
    """

    hosts: tuple[str, ...] = LOOPBACK_HOSTS
    token: str | None = None
    max_jobs: int = 4
    max_genes: int = 2000
    max_body_bytes: int = 64 * 1024
    job_ttl_s: float = 3600.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to listen on) serves this machine only."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def viewer_access(host: str, *, token: str | None = None, extra_hosts: Sequence[str] = ()) -> ViewerAccess:
    """The access rules for a viewer listening on ``host``.

    On loopback it answers to the loopback names and needs no token unless one
    is given. Anywhere else it needs a token (a new random one unless given) and
    answers to ``host``, this machine's names and addresses, and ``extra_hosts``
    (a DNS alias users type).

    >>> viewer_access("127.0.0.1").token is None
    True
    >>> len(viewer_access("0.0.0.0").token) >= 32
    True
    """
    if is_loopback(host):
        return ViewerAccess(hosts=tuple(dict.fromkeys([*LOOPBACK_HOSTS, *extra_hosts])), token=token or None)
    names = [host, *extra_hosts, *LOOPBACK_HOSTS]
    try:
        name, aliases, addresses = socket.gethostbyname_ex(socket.gethostname())
        names += [name, socket.getfqdn(), *aliases, *addresses]
    except OSError:
        pass
    hosts = tuple(dict.fromkeys(n.lower() for n in names if n and n not in ("0.0.0.0", "::", "[::]")))
    return ViewerAccess(hosts=hosts, token=token or secrets.token_urlsafe(32))


def viewer_url(host: str, port: int, access: ViewerAccess) -> str:
    """The URL to open: this machine's name where ``host`` is a wildcard, with the token where one is needed.

    >>> viewer_url("127.0.0.1", 8765, ViewerAccess())
    'http://127.0.0.1:8765/'
    """
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "[::]") else host
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    return f"http://{shown}:{port}/" + (f"?token={access.token}" if access.token else "")


def content_security_policy() -> str:
    """Only the viewer's own scripts, styles, images and API; no plug-ins, frames or forms elsewhere."""
    digest = base64.b64encode(hashlib.sha256(OPENSEADRAGON_INLINE_CSS.encode()).digest()).decode()
    return ("default-src 'none'; script-src 'self'; style-src 'self' 'sha256-" + digest + "'; "
            "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


class AccessGuard:
    """ASGI middleware enforcing :class:`ViewerAccess` (after the host check) and adding the security headers."""

    def __init__(self, app, access: ViewerAccess):
        self.app, self.access = app, access
        self.headers = [(b"content-security-policy", content_security_policy().encode()),
                        (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                        (b"x-frame-options", b"DENY")]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.refusal(scope, headers)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        if refusal is not None:
            status, body, extra = refusal
            await send_with_headers({"type": "http.response.start", "status": status,
                                     "headers": [(b"content-type", b"application/json"), *extra]})
            await send_with_headers({"type": "http.response.body", "body": json.dumps(body).encode()})
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope, headers: dict[str, str]) -> tuple[int, dict, list] | None:
        """``(status, body, headers)`` of the answer that refuses this request, or ``None`` to let it through."""
        method, path = scope["method"], scope["path"]
        if method in UNSAFE_METHODS:
            origin = headers.get("origin")
            if headers.get("sec-fetch-site") == "cross-site" or (
                    origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower()):
                return 403, {"error": f"refused a cross-site {method} (Origin {origin or 'unknown'}): prompts start "
                                      f"from the viewer's own page"}, []
            if headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
                return 415, {"error": f"a {method} body must be JSON (Content-Type: application/json)"}, []
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.access.max_body_bytes):
                return 413, {"error": f"a request body may hold at most {self.access.max_body_bytes} bytes"}, []
        token = self.access.token
        if token is None:
            return None
        offered = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        if path == "/" and offered is not None:
            if not _same(offered, token):
                return 401, {"error": "that is not this viewer's token: open the URL `hquery view` printed"}, []
            cookie = f"{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
            return 303, {"to": "/"}, [(b"location", b"/"), (b"set-cookie", cookie.encode())]
        if not path.startswith("/api/"):
            return None
        sent = headers.get("authorization", "")
        sent = sent[len("Bearer "):] if sent.startswith("Bearer ") else _cookie(headers.get("cookie", ""))
        if sent is None or not _same(sent, token):
            return 401, {"error": "this viewer needs its token: open the URL `hquery view` printed (it ends in "
                                  "?token=...), or send Authorization: Bearer TOKEN"}, []
        return None


def _cookie(header: str) -> str | None:
    try:
        morsel = SimpleCookie(header).get(TOKEN_COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel is not None else None


def _same(offered: str, token: str) -> bool:
    return secrets.compare_digest(offered.encode(), token.encode())
