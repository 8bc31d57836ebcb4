"""The optional bearer token (QUAERO_API_TOKEN): required on every route but /healthz.

The web UI's shell (`/`, `/ui/…`) loads without it, but its API calls need it. Browsers'
EventSource cannot send headers, so the UI keeps the token in the `quaero_token` cookie,
percent-encoded (SameSite=Strict: other sites' pages cannot make the browser send it).
"""

from __future__ import annotations

import hmac
from urllib.parse import unquote

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway.errors import error_response

COOKIE = "quaero_token"
_OPEN_PATHS = frozenset({"/healthz", "/", "/favicon.ico"})
_OPEN_PREFIXES = ("/ui/",)


def _is_open(path: str) -> bool:
    return path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES)


def _presented_token(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            token = cookie_parser(value.decode("latin-1")).get(COOKIE)
            if token:
                # The UI writes it percent-encoded (encodeURIComponent), so that any token,
                # base64's `+ / =` included, fits in a cookie.
                return unquote(token)
    return None


class TokenAuthMiddleware:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        presented = _presented_token(scope)
        if presented is not None and hmac.compare_digest(presented.encode(), self._token):
            await self.app(scope, receive, send)
            return
        message = (
            "wrong API token" if presented is not None else "an API token is required: send Authorization: Bearer …"
        )
        response = error_response(401, "UNAUTHENTICATED", message)
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)
