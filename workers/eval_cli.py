"""`steward eval run`: run a dataset against an agent through the API, show progress, gate on the rate.

It speaks to a running Steward (`--url`, default `STEWARD_PUBLIC_URL`) with `STEWARD_KEY`,
starts the run (`POST /v1/evals/runs`), draws a progress bar on stderr while it polls the
run, then prints one row per case and exits 0 when the pass rate is at least `--min-pass`
(default 1.0: every case), 1 under it, and 2 when the run could not be made or followed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import IO, Any

import httpx

POLL_SECONDS = 0.5
BAR_WIDTH = 30
EXIT_PASSED, EXIT_UNDER, EXIT_BROKEN = 0, 1, 2


@dataclass(frozen=True)
class EvalArgs:
    url: str
    key: str
    dataset: str
    agent: str
    version: str = "draft"
    min_pass: float = 1.0
    concurrency: int | None = None
    timeout: float = 3600.0


class EvalCliError(Exception):
    """The API refused or could not be reached; the message says what to do."""


def _bar(run: dict[str, Any]) -> str:
    total = max(1, int(run["total"]))
    done = int(run["done"])
    filled = round(BAR_WIDTH * done / total)
    rate = run.get("pass_rate")
    shown = f"{rate:.0%}" if rate is not None else "-"
    return f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} cases, passing {shown}"


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise EvalCliError(f"the API answered {response.status_code}: {message}")
    return dict(response.json())


def _table(results: list[dict[str, Any]]) -> list[str]:
    """One row per case: its number, verdict, name or first message, and why it did not pass."""
    rows = [f"{'#':>4}  {'verdict':<7}  {'case':<40}  why"]
    for result in results:
        label = result["name"] or (result["messages"][-1] if result["messages"] else result["case_id"])
        label = label if len(label) <= 40 else label[:39] + "…"
        why = "; ".join(
            f"{r['name']}: {r['reason']}" for r in result["results"] if r["verdict"] != "pass"
        ) or (result.get("error") or "")
        rows.append(f"{result['seq']:>4}  {result['verdict']:<7}  {label:<40}  {why[:160]}")
    return rows


def run_eval(args: EvalArgs, out: IO[str], err: IO[str], client: httpx.Client | None = None) -> int:
    """Run it, print progress to `err` and the table to `out`; the exit code."""
    http = client or httpx.Client(base_url=args.url.rstrip("/"), timeout=30)
    headers = {"Authorization": f"Bearer {args.key}"}
    version: int | str = int(args.version) if args.version.isdigit() else args.version
    body: dict[str, Any] = {"dataset": args.dataset, "agent": args.agent, "version": version}
    if args.concurrency is not None:
        body["concurrency"] = args.concurrency
    try:
        run = _answer(http.post("/v1/evals/runs", json=body, headers=headers))
        deadline = time.monotonic() + args.timeout
        while run["status"] != "completed":
            err.write(_bar(run))
            err.flush()
            if time.monotonic() > deadline:
                raise EvalCliError(f"run {run['id']} did not finish in {args.timeout:.0f} s; it goes on")
            time.sleep(POLL_SECONDS)
            run = _answer(http.get(f"/v1/evals/runs/{run['id']}", headers=headers))
        err.write(_bar(run) + "\n")
        results = _answer(http.get(f"/v1/evals/runs/{run['id']}/results", headers=headers))["items"]
    except (httpx.HTTPError, EvalCliError) as failure:
        err.write(f"\nsteward eval: {failure}\n")
        return EXIT_BROKEN
    finally:
        if client is None:
            http.close()
    for line in _table(results):
        out.write(line + "\n")
    rate = run["passed"] / run["total"] if run["total"] else 0.0
    verdict = "passed" if rate >= args.min_pass else "UNDER THE THRESHOLD"
    out.write(
        f"run {run['id']}: {run['passed']}/{run['total']} passed ({rate:.1%}), {run['failed']} failed, "
        f"{run['errored']} errors; tokens {run['tokens_prompt']}+{run['tokens_completion']}; "
        f"minimum {args.min_pass:.1%}: {verdict}\n"
    )
    return EXIT_PASSED if rate >= args.min_pass else EXIT_UNDER
