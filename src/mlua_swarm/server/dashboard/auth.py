"""Dashboard sign-in and CSRF protection.

When the server has an admin token (it must have one to listen off loopback), a person signs in with
that token through a form; the token then lives in an HttpOnly, SameSite=Strict cookie and every
dashboard page and action checks it. Every mutating dashboard request (forms and `fetch` calls alike)
carries a CSRF token: an HMAC, under a per-process secret, of a random seed kept in its own HttpOnly
cookie. A page embeds the token; another site can neither read it nor compute it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

ADMIN_COOKIE = "mse_admin"
SEED_COOKIE = "mse_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SEED_CHARS = 43
"""Length of `secrets.token_urlsafe(32)`."""


class Guard:
    """Who may see the dashboard (`signed_in`) and whether a mutating request is genuine (`csrf_ok`).

    `admin_token` is read from the server's config on every request, so the guard never holds a stale
    copy; only the CSRF secret is its own.
    """

    def __init__(self, admin_token: Callable[[Request], str | None]) -> None:
        self.admin_token = admin_token
        self._secret = secrets.token_bytes(32)

    def required(self, request: Request) -> bool:
        """Sign-in is needed: the server has an admin token."""
        return bool(self.admin_token(request))

    def signed_in(self, request: Request) -> bool:
        return not self.required(request) or self.token_matches(request, request.cookies.get(ADMIN_COOKIE, ""))

    def token_matches(self, request: Request, presented: str) -> bool:
        expected = self.admin_token(request)
        return expected is not None and hmac.compare_digest(presented.encode(), expected.encode())

    def seed(self, request: Request) -> tuple[str, bool]:
        """The request's CSRF seed, and whether it is new (to be set as a cookie on the response)."""
        seed = request.cookies.get(SEED_COOKIE)
        if seed and len(seed) == SEED_CHARS:
            return seed, False
        return secrets.token_urlsafe(32), True

    def csrf_token(self, seed: str) -> str:
        return hmac.new(self._secret, seed.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, request: Request, supplied: str | None) -> bool:
        seed = request.cookies.get(SEED_COOKIE)
        if not seed or not supplied:
            return False
        return hmac.compare_digest(self.csrf_token(seed), supplied)


def secure_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int | None = None) -> None:
    """Set an HttpOnly, SameSite=Strict cookie for the whole site (Secure when served over https)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


__all__ = ["ADMIN_COOKIE", "CSRF_FIELD", "CSRF_HEADER", "SEED_COOKIE", "Guard", "secure_cookie"]
