"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from schemas.api import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health()


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(request: Request) -> JSONResponse:
    """200 when the database and Temporal answer; 503 naming what is down otherwise."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with request.app.state.sessions() as session:
                await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as err:
        checks["database"] = f"down: {type(err).__name__}"
    client = request.app.state.temporal
    if client is None:
        checks["temporal"] = "down: not connected"
    else:
        try:
            async with asyncio.timeout(2):
                healthy = await client.service_client.check_health()
            checks["temporal"] = "ok" if healthy else "down: not serving"
        except Exception as err:
            checks["temporal"] = f"down: {type(err).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = Readiness(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
