"""The `steward` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import NoReturn

from schemas.enums import Role
from schemas.settings import Settings
from workers import logs, loop


def _cmd_dev(args: argparse.Namespace) -> None:
    from workers import dev

    logs.configure("INFO", json_lines=False)
    dev.main(args.port, Path(args.data_dir), args.temporal_port, args.ui_port)


def _refuse(err: Exception) -> NoReturn:
    """Stop with a message a person acts on (no traceback): a taken port, say."""
    sys.stderr.write(f"{err}\n")
    raise SystemExit(1) from err


def _check_payload_keys(settings: Settings) -> None:
    """Refuse a malformed STEWARD_PAYLOAD_KEYS before serving (its message never shows a key)."""
    from activities.infra.codec import settings_keys

    try:
        settings_keys(settings)
    except ValueError as err:
        _refuse(err)


def _cmd_api(args: argparse.Namespace) -> None:
    from api.app import create_app
    from workers.serve import ApiServer, PortInUse, api_config, listen

    settings = Settings()
    logs.configure(settings.log_level)
    _check_payload_keys(settings)  # here: the API connects to Temporal in the background
    try:
        sock = listen(args.host, args.port, "steward api")
    except PortInUse as err:
        _refuse(err)
    app = create_app(settings)
    ApiServer(api_config(app, settings, args.host, args.port), app).run(sockets=[sock])


def _cmd_serve(args: argparse.Namespace) -> None:
    from workers.serve import PortInUse, serve

    settings = Settings()
    logs.configure(settings.log_level)
    _check_payload_keys(settings)
    try:
        loop.run(serve(settings, args.host, args.port))
    except PortInUse as err:
        _refuse(err)


def _cmd_worker(_: argparse.Namespace) -> None:
    from workers.run_worker import run_worker

    settings = Settings()
    logs.configure(settings.log_level)
    _check_payload_keys(settings)
    loop.run(run_worker(settings))


def _cmd_migrate(_: argparse.Namespace) -> None:
    from workers.migrate import migrate

    settings = Settings()
    logs.configure(settings.log_level)
    migrate(settings)
    sys.stdout.write("database is up to date\n")


def _cmd_keys_create(args: argparse.Namespace) -> None:
    from api.services.keys import create_key, ensure_team

    settings = Settings()

    async def work() -> str:
        from activities.infra.database import create_engine, session_factory

        engine = create_engine(settings)
        try:
            async with session_factory(engine)() as session:
                team = await ensure_team(session, args.team)
                key = await create_key(session, team, Role(args.role), args.name or f"{args.role} key")
                await session.commit()
                return key
        finally:
            await engine.dispose()

    key = asyncio.run(work())
    sys.stdout.write(f"created a {args.role} key for team {args.team}; it is shown only once:\n{key}\n")


def _cmd_set_webhook(args: argparse.Namespace) -> None:
    from activities.infra.database import create_engine, session_factory
    from workers.channels import set_telegram_webhook

    settings = Settings()
    logs.configure(settings.log_level)

    async def work() -> str:
        engine = create_engine(settings)
        try:
            return await set_telegram_webhook(session_factory(engine), settings, args.channel_id, args.url)
        finally:
            await engine.dispose()

    try:
        hook = asyncio.run(work())
    except LookupError as err:
        sys.stderr.write(f"{err}\n")
        raise SystemExit(2) from err
    sys.stdout.write(f"Telegram now delivers updates to {hook}\n")


def _cmd_incidents_simulate(args: argparse.Namespace) -> None:
    """Inject a fault for a while, so burn, incident, notices, recovery and resolution can be watched."""
    from activities.infra.database import create_engine, session_factory
    from api.services.incidents import simulate
    from schemas.enums import FaultKind

    settings = Settings()
    logs.configure(settings.log_level)

    async def work() -> str:
        engine = create_engine(settings)
        try:
            async with session_factory(engine)() as session:
                team = args.team or settings.default_team
                fault = await simulate(session, FaultKind(args.kind), args.minutes, team, args.agent)
                return fault.ends_at.strftime("%H:%M:%S UTC")
        finally:
            await engine.dispose()

    try:
        until = asyncio.run(work())
    except LookupError as err:
        sys.stderr.write(f"{err}\n")
        raise SystemExit(2) from err
    who = f"agent {args.agent}" if args.agent else "every agent"
    sys.stdout.write(
        f"{args.kind} injected for {who} until {until}. The SLO evaluation (every "
        f"{settings.slo_eval_seconds:g} s) opens an incident once the fast burn windows fill, "
        "and resolves it after the fault ends: watch /incidents.\n"
    )


def _add_incidents(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    incidents = commands.add_parser("incidents", help="SLO incidents")
    incident_commands = incidents.add_subparsers(dest="incidents_command", required=True)
    simulate = incident_commands.add_parser(
        "simulate", help="inject a fault (LLM outage, slow LLM, channel down) to see an incident end to end"
    )
    simulate.add_argument("--kind", required=True, choices=["llm_outage", "slow_llm", "channel_down"])
    simulate.add_argument("--minutes", type=_positive_minutes, required=True, help="how long the fault lasts")
    simulate.add_argument("--agent", help="only this agent (its slug); every agent if omitted")
    simulate.add_argument(
        "--team", default=Settings().default_team, help="the agent's team (default: the default team)"
    )
    simulate.set_defaults(run=_cmd_incidents_simulate)


def _cmd_eval_run(args: argparse.Namespace) -> None:
    from workers.eval_cli import EvalArgs, run_eval

    settings = Settings()
    key = settings.cli_key.get_secret_value() if settings.cli_key else None
    if not key:
        _refuse(ValueError("steward eval: set STEWARD_KEY to an admin API key of the team"))
    code = run_eval(
        EvalArgs(
            url=args.url or settings.public_url,
            key=key,
            dataset=args.dataset,
            agent=args.agent,
            version=args.version,
            min_pass=args.min_pass,
            concurrency=args.concurrency,
        ),
        sys.stdout,
        sys.stderr,
    )
    raise SystemExit(code)


def _fraction(value: str) -> float:
    share = float(value)
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError("must be from 0 to 1")
    return share


def _add_eval(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evals = commands.add_parser("eval", help="evaluations")
    eval_commands = evals.add_subparsers(dest="eval_command", required=True)
    run = eval_commands.add_parser(
        "run", help="run a dataset against an agent; exits 1 under --min-pass (for CI), 2 on errors"
    )
    run.add_argument("--dataset", required=True, help="the dataset's id or name")
    run.add_argument("--agent", required=True, help="the agent's slug")
    run.add_argument("--version", default="draft", help="a version number or draft (default draft)")
    run.add_argument("--min-pass", type=_fraction, default=1.0, help="pass rate needed, 0..1 (default 1)")
    run.add_argument("--concurrency", type=int, choices=range(1, 65), metavar="1..64", help="cases at once")
    run.add_argument("--url", help="Steward's address (default STEWARD_PUBLIC_URL)")
    run.set_defaults(run=_cmd_eval_run)


def _positive_minutes(value: str) -> float:
    minutes = float(value)
    if not 0 < minutes <= 24 * 60:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 1440")
    return minutes


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="steward", description="Durable orchestration for AI agents.")
    commands = root.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the whole embedded stack (Temporal, worker, API) locally")
    dev.add_argument("--port", type=int, default=8000, help="API port (default 8000; pick another if taken)")
    dev.add_argument("--data-dir", default=".steward", help="where state lives (default .steward)")
    dev.add_argument("--temporal-port", type=int, default=7233, help="Temporal gRPC port (default 7233)")
    dev.add_argument("--ui-port", type=int, default=8233, help="Temporal Web UI port (default 8233)")
    dev.set_defaults(run=_cmd_dev)

    api = commands.add_parser("api", help="run the API server (configured by environment)")
    api.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server binds all interfaces in a container
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(run=_cmd_api)

    both = commands.add_parser("serve", help="run API and worker in one process (configured by environment)")
    both.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server binds all interfaces in a container
    both.add_argument("--port", type=int, default=8000)
    both.set_defaults(run=_cmd_serve)

    worker = commands.add_parser("worker", help="run a Temporal worker (configured by environment)")
    worker.set_defaults(run=_cmd_worker)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(run=_cmd_migrate)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key (prints it on the last line)")
    create.add_argument("--team", required=True, help="team slug; created if missing")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", help="a label for the key")
    create.set_defaults(run=_cmd_keys_create)

    channels = commands.add_parser("channels", help="set up channels")
    channel_kinds = channels.add_subparsers(dest="channel_kind", required=True)
    telegram = channel_kinds.add_parser("telegram", help="Telegram channels")
    telegram_commands = telegram.add_subparsers(dest="telegram_command", required=True)
    hook = telegram_commands.add_parser("set-webhook", help="register the channel's webhook with Telegram")
    hook.add_argument("channel_id")
    hook.add_argument("--url", required=True, help="the public https:// URL where Steward's API is reached")
    hook.set_defaults(run=_cmd_set_webhook)
    _add_incidents(commands)
    _add_eval(commands)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.run(args)
