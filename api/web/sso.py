"""Single sign-on with OpenID Connect: the authorization-code flow with PKCE, through `authlib`.

Configured by `STEWARD_OIDC_ISSUER`, `STEWARD_OIDC_CLIENT_ID` and `STEWARD_OIDC_CLIENT_SECRET`;
the provider's endpoints come from its discovery document. `/login/sso` sends the browser
to the provider with a fresh `state`, `nonce` and PKCE challenge, kept in a short-lived
HttpOnly cookie of this browser's own; `/login/sso/callback` refuses a `state` that is not
that one, exchanges the code with the PKCE verifier, and accepts the ID token only if its
signature verifies against the provider's published keys and its issuer, audience, expiry
and `nonce` are right. The person is found by the provider's subject (or, the first time,
by a verified email address). Nobody joins a team by signing in: an unknown person is told
to ask for an invitation.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.services import users
from api.web.session import HOME, _login_form, safe_next, sign_in_person
from schemas.settings import Settings
from schemas.tables import User

router = APIRouter(tags=["web"], include_in_schema=False)

FLOW_COOKIE = "steward_sso"
FLOW_SECONDS = 600
DISCOVERY_SECONDS = 3600.0
_discovery: dict[str, tuple[float, dict[str, Any]]] = {}


class SsoRefused(Exception):
    """The provider's answer cannot sign anyone in; the message says why."""


async def discover(settings: Settings) -> dict[str, Any]:
    """The issuer's discovery document (cached an hour)."""
    issuer = (settings.oidc_issuer or "").rstrip("/")
    cached = _discovery.get(issuer)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        document: dict[str, Any] = response.json()
    _discovery[issuer] = (time.monotonic() + DISCOVERY_SECONDS, document)
    return document


def _client(settings: Settings, request: Request) -> AsyncOAuth2Client:
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
    return AsyncOAuth2Client(
        client_id=settings.oidc_client_id,
        client_secret=secret,
        scope="openid email profile",
        redirect_uri=str(request.url_for("sso_callback")),
        code_challenge_method="S256",
        timeout=10,
    )


@router.get("/login/sso")
async def sso_start(request: Request, settings: SettingsDep, next: str | None = None) -> Response:
    if settings.oidc_issuer is None or settings.oidc_client_id is None:
        return _login_form(request, next or HOME, "Single sign-on is not configured.", 404)
    document = await discover(settings)
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    async with _client(settings, request) as client:
        url, _ = client.create_authorization_url(
            document["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
    response = RedirectResponse(url, status_code=303)
    flow = json.dumps({"state": state, "nonce": nonce, "verifier": verifier, "next": safe_next(next)})
    response.set_cookie(
        FLOW_COOKIE,
        flow,
        max_age=FLOW_SECONDS,
        path="/login/sso",
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies or request.url.scheme == "https",
    )
    return response


async def verified_claims(
    settings: Settings, document: dict[str, Any], id_token: str, nonce: str
) -> dict[str, Any]:
    """The ID token's claims, if its signature, issuer, audience, expiry and nonce are right."""
    async with httpx.AsyncClient(timeout=10) as client:
        keys = (await client.get(document["jwks_uri"])).json()
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(keys), algorithms=["RS256", "ES256"])
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": str(document.get("issuer") or settings.oidc_issuer)},
            aud={"essential": True, "value": str(settings.oidc_client_id)},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(token.claims)
    except (JoseError, ValueError) as err:
        raise SsoRefused(f"the identity provider's ID token was refused ({err.__class__.__name__})") from err
    return dict(token.claims)


async def _person(session: SessionDep, settings: Settings, claims: dict[str, Any]) -> User | None:
    subject = f"{settings.oidc_issuer}|{claims['sub']}"[:320]
    user = (await session.execute(select(User).where(User.oidc_subject == subject))).scalar_one_or_none()
    if user is None and isinstance(claims.get("email"), str) and claims.get("email_verified") is True:
        user = await users.find_user(session, claims["email"])
        if user is not None and user.oidc_subject is None:
            user.oidc_subject = subject  # linked on first sign-in; committed with the session
    return user


@router.get("/login/sso/callback", name="sso_callback")
async def sso_callback(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    try:
        flow = json.loads(request.cookies.get(FLOW_COOKIE, "{}"))
    except json.JSONDecodeError:
        flow = {}
    next_path = safe_next(flow.get("next"))
    if error or not code or not state or not isinstance(flow, dict) or state != flow.get("state"):
        message = (
            f"Single sign-on failed: {error}." if error else "Single sign-on failed: the state did not match."
        )
        return _clear(_login_form(request, next_path, message, 400))
    try:
        document = await discover(settings)
        async with _client(settings, request) as client:
            token = await client.fetch_token(
                document["token_endpoint"], code=code, code_verifier=flow.get("verifier")
            )
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SsoRefused("the identity provider sent no ID token")
        claims = await verified_claims(settings, document, id_token, str(flow.get("nonce")))
    except (SsoRefused, httpx.HTTPError, KeyError) as err:
        reason = str(err) if isinstance(err, SsoRefused) else "the identity provider could not be reached"
        return _clear(_login_form(request, next_path, f"Single sign-on failed: {reason}.", 400))
    except Exception as err:  # authlib's OAuth errors (a refused code) have no common base we import
        return _clear(
            _login_form(request, next_path, f"Single sign-on failed: {err.__class__.__name__}.", 400)
        )
    user = await _person(session, settings, claims)
    if user is None:
        return _clear(
            _login_form(
                request, next_path, "No account here for that sign-in; ask an admin for an invitation.", 403
            )
        )
    return _clear(await sign_in_person(request, session, settings, user, next_path))


def _clear(response: Response) -> Response:
    response.delete_cookie(FLOW_COOKIE, path="/login/sso")
    return response
