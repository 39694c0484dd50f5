"""Web sign-in: people with email and password (or single sign-on), machine users with an API key.

Signing in creates a server-side session (`api.services.sessions`); the cookie
`steward_session` holds its random token. It is HttpOnly, SameSite=Lax (so the single
sign-on redirect back from the identity provider still carries it), Secure unless Steward
is reached over plain http, and scoped to `/`. Pages depend on `WebUser`, which redirects
(303) to `/login?next=<path>` when the cookie is missing or its session has ended; pages
for team members depend on `TeamMember`, which refuses a `client` key with 403. The
pages' own scripts call the `/v1` API with the same cookie; see `api.deps.get_principal`
for how such changes are protected against cross-site request forgery.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import (
    SESSION_COOKIE,
    KeyCache,
    Principal,
    SessionDep,
    SettingsDep,
    principal_of_key,
    principal_of_token,
    same_origin,
)
from api.errors import ApiError
from api.services import invites, users
from api.services import sessions as web_sessions
from api.web import templates
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import User

router = APIRouter(tags=["web"], include_in_schema=False)

HOME = "/playground"
TEAM_ROLES = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
"""Who may read team pages (schedules, reports, dead letters): everyone but `client` keys."""


class LoginRequired(Exception):
    """Raised by `web_principal`; answered with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageForbidden(Exception):
    """Raised by `web_requires`; answered with the 403 page naming the roles needed."""

    def __init__(self, user: Principal, roles: tuple[Role, ...]) -> None:
        super().__init__(user.role.value)
        self.user = user
        self.roles = roles


def install(app: FastAPI) -> None:
    """Answer `LoginRequired` with 303 to `/login?next=...`, and `PageForbidden` with a 403 page."""

    @app.exception_handler(LoginRequired)
    async def _login(_: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)

    @app.exception_handler(PageForbidden)
    async def _forbidden(request: Request, exc: PageForbidden) -> Response:
        needs = ", ".join(r.value for r in exc.roles)
        return templates.TemplateResponse(
            request, "page_forbidden.html", {"user": exc.user, "needs": needs}, status_code=403
        )


def safe_next(value: str | None) -> str:
    """A same-site relative path to go to after signing in (anything else goes home)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return HOME
    if any(ord(c) < 0x20 for c in value):
        return HOME
    return value


async def web_principal(request: Request, session: SessionDep) -> Principal:
    """The signed-in person or key for a page, or a redirect to the sign-in page."""
    token = request.cookies.get(SESSION_COOKIE)
    principal = await principal_of_token(request, session, token) if token else None
    if principal is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)
    if principal.user_id is not None:  # the header's team switcher
        request.state.teams = await users.teams_of(session, principal.user_id)
    return principal


WebUser = Annotated[Principal, Depends(web_principal)]


def web_requires(*roles: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A page dependency admitting only `roles` (the same the page's API routes admit)."""

    async def check(user: WebUser) -> Principal:
        if user.role not in roles:
            raise PageForbidden(user, roles)
        return user

    return check


TeamMember = Annotated[Principal, Depends(web_requires(*TEAM_ROLES))]
WebAdmin = Annotated[Principal, Depends(web_requires(Role.ADMIN))]


def _check_origin(request: Request) -> None:
    # A sign-in form posted from another site would sign the browser in as someone else.
    if request.headers.get("origin") is not None and not same_origin(request):
        raise ApiError(403, "csrf_failed", "sign-in must come from Steward's own pages")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def set_session_cookie(request: Request, response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_days * 86400),
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies or request.url.scheme == "https",
    )


def forget(request: Request) -> None:
    """A session or key ended here: this process stops honouring it at once."""
    cache: KeyCache = request.app.state.key_cache
    cache.clear()


async def sign_in_person(
    request: Request, session: SessionDep, settings: Settings, user: User, next_path: str
) -> Response:
    """A session for a person in their first team (the switcher changes it); committed."""
    teams = await users.teams_of(session, user.id)
    if not teams:
        return _login_form(request, next_path, "Your account is not a member of any team yet.", 403)
    token = await web_sessions.create_session(
        session,
        settings,
        team_id=teams[0].team_id,
        user_id=user.id,
        user_agent=request.headers.get("user-agent", ""),
        ip=client_ip(request),
    )
    await session.commit()
    response = RedirectResponse(safe_next(next_path), status_code=303)
    set_session_cookie(request, response, settings, token)
    return response


def _login_form(
    request: Request, next_path: str, error: str | None, status: int = 200, email: str = ""
) -> Response:
    settings: Settings = request.app.state.settings
    return templates.TemplateResponse(
        request,
        "login.html",
        {
            "next": safe_next(next_path),
            "error": error,
            "user": None,
            "email": email,
            "sso": settings.oidc_issuer is not None,
        },
        status_code=status,
    )


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return _login_form(request, next or HOME, None)


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    key: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = HOME,
) -> Response:
    """Sign in with email and password, or with an API key; redirect to `next` (a relative path only)."""
    _check_origin(request)
    if key.strip():
        principal = await principal_of_key(request, session, key)
        if principal is None:
            return _login_form(request, next, "That API key is not valid (or was revoked).", 401)
        token = await web_sessions.create_session(
            session,
            settings,
            team_id=principal.team_id,
            key_id=principal.key_id,
            user_agent=request.headers.get("user-agent", ""),
            ip=client_ip(request),
        )
        await session.commit()
        response = RedirectResponse(safe_next(next), status_code=303)
        set_session_cookie(request, response, settings, token)
        return response
    if not email.strip() or not password:
        return _login_form(request, next, "Enter your email address and password.", 401, email)
    try:
        user = await users.authenticate(session, settings, email, password, client_ip(request))
    except ApiError as err:
        return _login_form(request, next, err.message[:1].upper() + err.message[1:] + ".", err.status, email)
    return await sign_in_person(request, session, settings, user, next)


@router.post("/logout")
async def logout(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """End the session (its row is revoked, not only the cookie dropped)."""
    _check_origin(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    if token.startswith(web_sessions.SESSION_PREFIX):
        await web_sessions.revoke_by_token(session, token)
        forget(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies or request.url.scheme == "https",
    )
    return response


@router.get("/invite/{token}")
async def invite_page(request: Request, token: str, session: SessionDep) -> Response:
    """Accept an invitation: a newcomer sets a name and password; a known person confirms theirs."""
    row = await invites.usable(session, invites.INVITE, token)
    known = row is not None and await users.find_user(session, row.email) is not None
    return templates.TemplateResponse(
        request,
        "invite.html",
        {"user": None, "invite": row, "known": known, "error": None},
        status_code=200 if row else 404,
    )


@router.post("/invite/{token}")
async def accept_invite(
    request: Request,
    token: str,
    session: SessionDep,
    settings: SettingsDep,
    display_name: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    _check_origin(request)
    row = await invites.usable(session, invites.INVITE, token)
    if row is None:
        return templates.TemplateResponse(
            request, "invite.html", {"user": None, "invite": None, "known": False, "error": None}, 404
        )
    known = await users.find_user(session, row.email) is not None
    shown = {"email": row.email, "role": row.role, "created_by": row.created_by}  # survives a rollback
    try:
        user = await invites.accept_invite(session, row, display_name, password)
    except ApiError as err:
        await session.rollback()
        return templates.TemplateResponse(
            request,
            "invite.html",
            {"user": None, "invite": shown, "known": known, "error": err.message},
            status_code=err.status,
        )
    return await sign_in_person(request, session, settings, user, "/")


@router.get("/reset/{token}")
async def reset_page(request: Request, token: str, session: SessionDep) -> Response:
    row = await invites.usable(session, invites.RESET, token)
    return templates.TemplateResponse(
        request, "reset.html", {"user": None, "reset": row, "error": None, "done": False}, 200 if row else 404
    )


@router.post("/reset/{token}")
async def reset_password(
    request: Request, token: str, session: SessionDep, password: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    """Set a new password; every earlier session of the person ends."""
    _check_origin(request)
    row = await invites.usable(session, invites.RESET, token)
    context: dict[str, Any] = {"user": None, "reset": row, "error": None, "done": False}
    if row is None:
        return templates.TemplateResponse(request, "reset.html", context, status_code=404)
    context["reset"] = {"email": row.email}  # survives a rollback
    try:
        await invites.reset_password(session, row, password)
    except ApiError as err:
        await session.rollback()
        return templates.TemplateResponse(
            request, "reset.html", {**context, "error": err.message}, err.status
        )
    forget(request)
    return templates.TemplateResponse(request, "reset.html", {**context, "done": True})
