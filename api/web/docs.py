"""Interactive API docs (`/docs`, `/redoc`) and the site icon, all served by the app itself.

FastAPI's own docs pages load Swagger UI and ReDoc from a CDN, so they are blank on a
machine with no internet. The `fastapi-offline` wheel (MIT) ships those bundles; the app
serves them from its install under `/static/docs/` and builds the pages with FastAPI's
`get_swagger_ui_html` / `get_redoc_html`, pointed at them. Nothing is fetched at run time,
and the pages' Content-Security-Policy keeps it so: ReDoc's sidebar would otherwise load its
maker's logo from their CDN (it hides the image when the load is refused).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.web import STATIC_DIR

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
"""`swagger-ui-bundle.js`, `swagger-ui.css` and `redoc.standalone.js`, as the wheel ships them."""
ASSETS_URL = "/static/docs"
ICON = STATIC_DIR / "favicon.ico"
"""Steward's icon (`favicon.svg` drawn at 16, 32 and 48 px)."""

OWN_HOST_ONLY = "default-src 'self' 'unsafe-inline' data: blob:"
"""The docs pages load only from Steward (their bootstrap scripts are inline; ReDoc's search runs
in a blob worker)."""

router = APIRouter(include_in_schema=False)


def _own_host_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = OWN_HOST_ONLY
    return page


def _openapi_url(request: Request) -> str:
    app: FastAPI = request.app
    return f"{request.scope.get('root_path', '')}{app.openapi_url}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: every route, with "Try it out"."""
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}/favicon.ico",
        swagger_ui_parameters=request.app.swagger_ui_parameters,
    )
    return _own_host_only(page)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc: the same API as one readable page."""
    root = request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} API",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}/favicon.ico",
        with_google_fonts=False,
    )
    return _own_host_only(page)


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """Browsers ask for it on every page; pages also link the SVG (`base.html`)."""
    return FileResponse(ICON, media_type="image/x-icon", headers={"Cache-Control": "public, max-age=86400"})


def install(app: FastAPI) -> None:
    """Add the docs pages, the icon, and the docs' assets (mounted ahead of `/static`)."""
    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-static")
