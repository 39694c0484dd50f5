"""`steward dev`: the whole embedded stack in one command.

Temporal dev server (SQLite file) as a child process; migrations and demo seed on a
SQLite app database; then `serve`: worker and API in this process, sharing one client.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from pathlib import Path

from pydantic import SecretStr

from activities.infra.codec import new_key as new_payload_key
from activities.infra.database import create_engine, session_factory
from activities.infra.hashing import generate_key
from activities.infra.secrets import generate_key as generate_secret_key
from api.services.keys import ensure_key
from api.services.users import ensure_person
from schemas.enums import Role, TracingMode
from schemas.settings import Settings
from workers import loop
from workers.migrate import migrate
from workers.seed import DEMO_AGENT, ensure_demo
from workers.seed_evals import ensure_demo_dataset
from workers.serve import listen, serve
from workers.temporal_server import DevServer

log = logging.getLogger("steward.dev")


def _dev_key(data_dir: Path) -> str:
    """The dev admin key, kept in the data dir so every run can show it."""
    path = data_dir / "dev-key"  # read once at start-up, before serving
    if path.exists():
        return path.read_text().strip()
    key = generate_key()
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


DEV_ADMIN_EMAIL = "admin@steward.local"


def _dev_password(data_dir: Path) -> str:
    """The demo admin's password, kept in the data dir so every run can show it."""
    path = data_dir / "dev-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


def _dev_secret_key(data_dir: Path) -> str:
    """The dev stack's credentials key (STEWARD_SECRET_KEY), kept beside its database."""
    path = data_dir / "secret-key"
    if path.exists():
        return path.read_text().strip()
    key = generate_secret_key()
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _dev_payload_keys(data_dir: Path) -> str:
    """The dev stack's Temporal payload key (STEWARD_PAYLOAD_KEYS), kept beside its histories."""
    path = data_dir / "payload-keys"
    if path.exists():
        return path.read_text().strip()
    keys = new_payload_key("dev-1")
    path.write_text(keys + "\n")
    path.chmod(0o600)
    return keys


def _banner(port: int, server: DevServer, key: str, model: str, password: str) -> str:
    api = f"http://127.0.0.1:{port}"
    demo = " (offline demo model: set OPENAI_API_KEY for a real one)" if model.startswith("steward-") else ""
    return f"""
  Steward is running.

  API           {api}
  Console       {api}/  (overview, conversations, takeover, inbox; members at /settings/members)
  Sign in       {api}/login  as {DEV_ADMIN_EMAIL}, password {password}
  API docs      {api}/docs
  Agent studio  {api}/agents  (versions, publish, rollback, test runs, templates, providers)
  Playground    {api}/playground
  Inbox         {api}/inbox  (approvals; reports of scheduled runs at /inbox/reports)
  Schedules     {api}/schedules
  Dead letters  {api}/dead-letters  (channel messages that could not be delivered)
  Metrics       {api}/metrics/agents  (per agent, over time; Prometheus at {api}/metrics)
  Incidents     {api}/incidents  (opened and resolved by the SLOs; steward incidents simulate)
  Traces        each turn as a waterfall: "trace" beside a message on its conversation page
  Temporal UI   {server.ui_url}
  Admin key     {key}
  Demo agent    {DEMO_AGENT} — model {model}{demo}

  Try it:
    export STEWARD_KEY={key}
    curl -s -X POST {api}/v1/conversations -H "Authorization: Bearer $STEWARD_KEY" \\
         -H 'content-type: application/json' -d '{{"agent": "{DEMO_AGENT}"}}'
    curl -s -X POST "{api}/v1/conversations/<id>/messages?wait=true" \\
         -H "Authorization: Bearer $STEWARD_KEY" -H 'content-type: application/json' \\
         -d '{{"text": "Any appointments available?"}}'

  Ctrl-C stops everything; running it again resumes where it left off.
"""


async def run_dev(port: int, data_dir: Path, temporal_port: int, ui_port: int) -> None:
    # The API's port first: a taken one is refused before Temporal starts, naming `--port`.
    with listen("127.0.0.1", port, "steward dev") as sock:
        await _run(sock, port, data_dir, temporal_port, ui_port)


async def _run(sock: socket.socket, port: int, data_dir: Path, temporal_port: int, ui_port: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        database_url=f"sqlite:///{(data_dir / 'steward.db').resolve()}",
        temporal_address=f"127.0.0.1:{temporal_port}",
        temporal_ui_url=f"http://127.0.0.1:{ui_port}",
        channel_polling=True,
    )
    if "STEWARD_PUBLIC_URL" not in os.environ:  # invitation links must point at this port
        settings.public_url = f"http://127.0.0.1:{port}"
    if "tracing" not in settings.model_fields_set:  # STEWARD_TRACING unset
        settings.tracing = TracingMode.DB  # every turn's waterfall in the console, nothing to run beside it
    if settings.secret_key is None:
        settings.secret_key = SecretStr(_dev_secret_key(data_dir))
    if settings.payload_keys is None:
        settings.payload_keys = SecretStr(_dev_payload_keys(data_dir))
    if "allow_http_actions" not in settings.model_fields_set:  # a local service is what one tries first
        settings.allow_http_actions = True
    if not settings.codec_cors_origins:  # its UI may call /codec (README, "Encrypted Temporal payloads")
        settings.codec_cors_origins = f"http://127.0.0.1:{ui_port},http://localhost:{ui_port}"
    if "allow_private_mcp" not in settings.model_fields_set:  # an MCP server on this machine, in dev
        settings.allow_private_mcp = True
    server = DevServer(data_dir / "temporal.db", temporal_port, ui_port, data_dir / "temporal.log")
    log.info("starting Temporal dev server on %s (UI %s)", server.address, server.ui_url)
    server.start()
    try:
        await server.wait_ready()
        migrate(settings)
        engine = create_engine(settings)
        key = _dev_key(data_dir)
        password = _dev_password(data_dir)
        async with session_factory(engine)() as session:
            team, agent = await ensure_demo(session, settings, settings.default_team)
            await ensure_key(session, team, key, Role.ADMIN, "dev admin")
            await ensure_person(session, team, DEV_ADMIN_EMAIL, "Dev Admin", password, Role.ADMIN)
            await ensure_demo_dataset(session, team)
            await session.commit()
        await engine.dispose()

        def ready() -> None:
            sys.stdout.write(_banner(port, server, key, agent.model, password))
            sys.stdout.flush()

        await serve(settings, "127.0.0.1", port, on_ready=ready, sock=sock)
    finally:
        server.stop()


def main(port: int, data_dir: Path, temporal_port: int, ui_port: int) -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        loop.run(run_dev(port, data_dir, temporal_port, ui_port))
    except (RuntimeError, TimeoutError) as err:
        log.error("%s", err)
        raise SystemExit(1) from err
