"""The evals pages in real headless Chromium: make a dataset, import, run an eval and watch it progress."""

from __future__ import annotations

import json
import os
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from schemas.settings import DEMO_MODEL
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.support import TeamClient
from tests.web import sign_in

WAIT = 20_000
"""ms a page may take to show an API's answer: the box is shared, requests can queue."""
SHOTS = Path(os.environ.get("STEWARD_SHOTS", "/tmp/shots-evals"))
CASES = 6


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_a_builder_imports_cases_runs_an_eval_and_watches_it_progress(
    browser: Browser, live_url: str, team: TeamClient, model: str, fake_llm: FakeOpenAI
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    assert (await team.send(conversation, "Where is my order?")).status_code == 200
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    try:
        await sign_in(page, live_url, team.key, "/evals")
        await expect(page.locator("nav[aria-label='Agent studio'] a[aria-current=page]")).to_have_text(
            "Evals"
        )
        await expect(page.locator("#no-datasets")).to_be_visible()
        await page.fill("#dataset-name", "golden")
        await page.click("#create-dataset")
        await page.wait_for_url(f"{live_url}/evals/datasets/*")

        rows = [json.dumps({"input": f"question {n}", "expect_contains": "answer"}) for n in range(CASES)]
        await page.fill("#import-content", "\n".join([*rows[:2], '{"input": ""}', *rows[2:]]))
        await page.click("#import")
        await expect(page.locator("#import-error")).to_contain_text("line 3", timeout=WAIT)
        await expect(page.locator("#no-cases")).to_be_visible()
        await page.fill("#import-content", "\n".join(rows))
        await page.click("#import")
        await expect(page.locator("#cases tbody tr")).to_have_count(CASES, timeout=WAIT)
        await _shot(page, "dataset")

        # One case at a time against a model that takes a moment: the page shows each step.
        answers = [Step(text=f"answer {n}", delay=0.6) for n in range(CASES - 1)]
        fake_llm.script(model, [*answers, Step(text="I don't know", delay=0.6)])
        await page.select_option("#run-agent", agent["slug"])
        await page.fill("#run-concurrency", "1")
        await page.click("#start-run")
        await page.wait_for_url(f"{live_url}/evals/runs/*")
        done = page.locator("#run-progress .done")
        await expect(done).not_to_have_text(f"0/{CASES}", timeout=30_000)
        await expect(done).not_to_have_text(f"{CASES}/{CASES}")  # seen mid-run
        await _shot(page, "run-progress")
        await expect(page.locator("#run-progress .badge")).to_have_text("completed", timeout=60_000)
        await expect(done).to_have_text(f"{CASES}/{CASES}")
        await expect(page.locator("#results .case-result")).to_have_count(CASES, timeout=WAIT)
        await expect(page.locator("#results .case-result[data-verdict=fail]")).to_have_count(1)
        failed = page.locator("#results .case-result[data-verdict=fail]")
        await expect(failed).to_contain_text("I don't know")
        await expect(failed).to_contain_text('does not hold "answer"')
        await _shot(page, "run-done")

        # A recorded turn becomes a case from the conversation's page.
        await page.goto(f"{live_url}/conversations/{conversation}")
        await expect(page.locator("#add-dataset option")).to_have_count(1, timeout=WAIT)
        await page.click("#add-to-dataset-button")
        await expect(page.locator("#add-to-dataset-result")).to_contain_text(
            f"case #{CASES + 1}", timeout=WAIT
        )
        await _shot(page, "add-to-dataset")
    finally:
        await context.close()


async def test_a_builder_turns_on_the_sandbox_and_sees_the_runs_real_bookings(
    browser: Browser, live_url: str, team: TeamClient
) -> None:
    agent = await team.create_agent(DEMO_MODEL, tools=["check_availability", "book_appointment"])
    made = await team.request("POST", "/v1/datasets", json={"name": "bookings"})
    dataset = made.json()["id"]
    case = {"messages": ["Any appointments available?", "Book it, my name is Ana"]}
    assert (await team.request("POST", f"/v1/datasets/{dataset}/cases", json=case)).status_code == 201
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    try:
        await sign_in(page, live_url, team.key, f"/evals/datasets/{dataset}")
        await expect(page.locator("#sandbox-mode")).to_have_text("simulated")
        await page.check("#sandbox")
        await page.click("#save-sandbox")
        await expect(page.locator("#sandbox-saved")).to_be_visible(timeout=WAIT)
        await expect(page.locator("#sandbox-mode")).to_have_text("run for real in a sandbox team per run")
        await page.reload()
        await expect(page.locator("#sandbox")).to_be_checked()
        await _shot(page, "dataset-sandbox")

        await page.select_option("#run-agent", agent["slug"])
        await page.click("#start-run")
        await page.wait_for_url(f"{live_url}/evals/runs/*")
        await expect(page.locator("#run-progress .badge")).to_have_text("completed", timeout=60_000)
        sandbox = page.locator("#run-sandbox")
        await expect(sandbox).to_contain_text("ran for real in a sandbox team")
        await expect(sandbox.locator(".sandbox-bookings")).to_have_text("1", timeout=WAIT)
        await _shot(page, "run-sandbox")
    finally:
        await context.close()
