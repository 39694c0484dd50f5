"""The incident path end to end on the embedded stack: burn → incident → recovery → resolved.

Starts `steward dev` in a temporary directory with the SLO windows scaled down
(`--scale`, 0.01 by default: 5 min → 3 s, 30 min → 18 s) and the evaluation every 2 s,
answers two turns of the demo agent, injects an LLM outage with
`steward incidents simulate --kind llm_outage`, keeps the agent busy through it and after
it, and prints how long after the first failed turn the incident opened and how long after
the fault ended it resolved, with the incident's timeline.

    uv run python -m bench.incident_path [--scale 0.01] [--fault-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

STEWARD = str(Path(sys.executable).parent / "steward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--fault-seconds", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=18931)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")},
            "STEWARD_SLO_WINDOW_SCALE": str(args.scale),
            "STEWARD_SLO_EVAL_SECONDS": "2",
        }
        log = open(Path(tmp) / "dev.log", "w+")  # noqa: SIM115 - read while the stack runs
        dev = subprocess.Popen(
            [STEWARD, "dev", "--port", str(args.port), "--temporal-port", str(args.port - 1000),
             "--ui-port", str(args.port + 1), "--data-dir", str(data)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            key = _admin_key(Path(log.name))
            env["STEWARD_DATABASE_URL"] = f"sqlite:///{data / 'steward.db'}"
            headers = {"Authorization": f"Bearer {key}"}
            api = httpx.Client(base_url=f"http://127.0.0.1:{args.port}", headers=headers, timeout=60)
            _run(api, env, args.fault_seconds)
        finally:
            dev.send_signal(signal.SIGINT)
            dev.wait(timeout=60)
            log.close()


def _admin_key(log: Path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "Admin key" in line:
                return line.split()[-1]
        time.sleep(0.5)
    raise SystemExit(f"steward dev did not start:\n{log.read_text()[-2000:]}")


def _run(api: httpx.Client, env: dict[str, str], fault_seconds: float) -> None:
    conversation = api.post("/v1/conversations", json={"agent": "concierge"}).json()["id"]

    def turn(text: str) -> str:
        reply = api.post(
            f"/v1/conversations/{conversation}/messages", params={"wait": "true"}, json={"text": text}
        )
        return str(reply.json()["status"])

    def incidents(status: str) -> list[dict[str, Any]]:
        page = api.get("/v1/incidents", params={"agent": "concierge", "status": status}).json()
        return list(page["items"])

    sys.stdout.write(f"before the fault: {turn('hello')}, {turn('any slots?')}\n")
    minutes = str(fault_seconds / 60)
    simulate = [
        STEWARD,
        "incidents",
        "simulate",
        "--kind",
        "llm_outage",
        "--minutes",
        minutes,
        "--agent",
        "concierge",
    ]
    subprocess.run(simulate, env=env, check=True, capture_output=True)
    injected = time.monotonic()
    first_failure: float | None = None
    opened: dict[str, Any] | None = None
    while time.monotonic() - injected < fault_seconds + 1:
        if turn("are you there?") == "failed" and first_failure is None:
            first_failure = time.monotonic()
        if opened is None and (found := incidents("open")):
            opened = found[0]
            since = time.monotonic() - (first_failure or injected)
            sys.stdout.write(
                f"incident opened {since:.1f} s after the first failed turn: "
                f"{opened['title']} [{opened['severity']}]\n"
            )
        time.sleep(0.5)
    if opened is None:
        raise SystemExit("no incident opened during the fault")
    ended = time.monotonic()
    while opened["id"] not in {i["id"] for i in incidents("resolved")}:
        turn("better now?")
        time.sleep(0.5)
        if time.monotonic() - ended > 300:
            raise SystemExit("the incident did not resolve within 5 min of the fault's end")
    sys.stdout.write(f"resolved {time.monotonic() - ended:.1f} s after the fault ended\n")
    for entry in api.get(f"/v1/incidents/{opened['id']}").json()["timeline"]:
        burns = entry["data"].get("burn_rates", {})
        sys.stdout.write(f"  {entry['at'][11:19]} {entry['kind']:<9} {entry['text']}  {burns}\n")


if __name__ == "__main__":
    main()
