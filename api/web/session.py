"""Web sign-in: a cookie holding the API key, shared by every page.

The cookie `steward_session` is HttpOnly, SameSite=Strict, Secure on https and scoped to
`/`. Pages depend on `WebUser`, which redirects (303) to `/login?next=<path>` when the
cookie is missing or its key is not valid. The pages' own scripts call the `/v1` API with
the same cookie; see `api.deps.get_principal` for how such changes are protected
against cross-site request forgery.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import SESSION_COOKIE, Principal, SessionDep, principal_of_key, same_origin
from api.errors import ApiError
from api.web import templates

router = APIRouter(tags=["web"], include_in_schema=False)

COOKIE_MAX_AGE = 30 * 24 * 3600
HOME = "/playground"


class LoginRequired(Exception):
    """Raised by `web_principal`; answered with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def install(app: FastAPI) -> None:
    """Answer `LoginRequired` with 303 to `/login?next=...`."""

    @app.exception_handler(LoginRequired)
    async def _login(_: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)


def safe_next(value: str | None) -> str:
    """A same-site relative path to go to after signing in (anything else goes home)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return HOME
    if any(ord(c) < 0x20 for c in value):
        return HOME
    return value


async def web_principal(request: Request, session: SessionDep) -> Principal:
    """The signed-in key for a page, or a redirect to the sign-in page."""
    key = request.cookies.get(SESSION_COOKIE)
    principal = await principal_of_key(request, session, key) if key else None
    if principal is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)
    return principal


WebUser = Annotated[Principal, Depends(web_principal)]


def _check_origin(request: Request) -> None:
    # A sign-in form posted from another site would sign the browser in as someone else.
    if request.headers.get("origin") is not None and not same_origin(request):
        raise ApiError(403, "csrf_failed", "sign-in must come from Steward's own pages")


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return templates.TemplateResponse(
        request, "login.html", {"next": safe_next(next), "error": None, "user": None}
    )


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = HOME,
) -> Response:
    """Sign in with an API key; redirect to `next` (a relative path only)."""
    _check_origin(request)
    principal = await principal_of_key(request, session, key) if key.strip() else None
    if principal is None:
        error = "Enter an API key." if not key.strip() else "That API key is not valid (or was revoked)."
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": safe_next(next), "error": error, "user": None},
            status_code=401,
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        key.strip(),
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    _check_origin(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
