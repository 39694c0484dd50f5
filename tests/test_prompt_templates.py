"""Prompt templates: what the model is shown, which template wins, what a save refuses, what a
version keeps, and that a prompt failing at run time fails its turn, not the conversation."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openai
import pytest
import sqlalchemy as sa
from alembic import command
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import utcnow
from tests.channels import new_chat, register_webhook, send_telegram_text, telegram_channel
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.fakes.telegram_server import FakeTelegram
from tests.support import TeamClient, add_key, migrating, new_team

SHOTS = Path("/tmp/shots-templates")
"""Where the browser test leaves its screenshots, to look at."""


def _system(fake_llm: FakeOpenAI, model: str, index: int = -1) -> str:
    """The system prompt the model saw in its `index`-th request."""
    first = fake_llm.requests(model)[index].body["messages"][0]
    assert first["role"] == "system", first
    return str(first["content"])


async def _template(team: TeamClient, status: int = 201, **body: Any) -> dict[str, Any]:
    response = await team.request("POST", "/v1/templates", json=body)
    assert response.status_code == status, response.text
    return dict(response.json())


async def _open(team: TeamClient, slug: str, **metadata: Any) -> str:
    response = await team.request("POST", "/v1/conversations", json={"agent": slug, "metadata": metadata})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _talk(team: TeamClient, conversation: str, text: str = "hi") -> dict[str, Any]:
    response = await team.send(conversation, text)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_the_model_sees_the_users_name_channel_variables_and_now_in_the_agents_zone(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    prompt = (
        "You help {{ user.name }} for {{ company }} on {{ channel.type }}.\n"
        "Plan: {{ conversation.metadata.plan | default('free') }}."
        " Today is {{ now.strftime('%Y-%m-%d %Z') }}."
    )
    agent = await team.create_agent(
        model, system_prompt=prompt, timezone="Pacific/Kiritimati", variables={"company": "ACME"}
    )
    assert agent["timezone"] == "Pacific/Kiritimati" and agent["variables"] == {"company": "ACME"}
    fake_llm.script(model, [Step(text="ok")] * 2)
    before = datetime.now(ZoneInfo("Pacific/Kiritimati"))
    await _talk(team, await _open(team, agent["slug"], user_name="Ana", plan="gold"))
    after = datetime.now(ZoneInfo("Pacific/Kiritimati"))
    days = {f"{d:%Y-%m-%d} +14" for d in (before, after)}  # UTC+14: a different day from UTC half the time
    shown = _system(fake_llm, model)
    assert shown.startswith("You help Ana for ACME on api.\nPlan: gold. Today is "), shown
    assert shown.removeprefix("You help Ana for ACME on api.\nPlan: gold. Today is ").rstrip(".") in days

    await _talk(team, await _open(team, agent["slug"]))  # no name known, no plan: blank and the default
    assert _system(fake_llm, model).startswith("You help  for ACME on api.\nPlan: free.")


async def test_an_agents_own_template_wins_over_a_global_one_of_the_same_name(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    await _template(team, name="tone", body="Be formal.")
    mine = await team.create_agent(model, system_prompt='Hello. {% include "tone" %}')
    other = await team.create_agent(model, system_prompt='Hi. {% include "tone" %}')
    own = await _template(team, name="tone", body="Be playful, {{ user.name }}.", agent=mine["slug"])
    assert own["agent"] == mine["slug"]
    for slug in (mine["slug"], other["slug"]):  # publish: the live versions freeze what they include now
        assert (await team.request("POST", f"/v1/agents/{slug}/publish", json={})).status_code == 201
    fake_llm.script(model, [Step(text="ok")] * 2)
    await _talk(team, await _open(team, mine["slug"], user_name="Bo"))
    assert _system(fake_llm, model) == "Hello. Be playful, Bo."
    await _talk(team, await _open(team, other["slug"]))
    assert _system(fake_llm, model) == "Hi. Be formal."

    listed = (await team.request("GET", "/v1/templates")).json()["items"]
    assert [(t["name"], t["agent"]) for t in listed] == [("tone", None), ("tone", mine["slug"])]
    scoped = (await team.request("GET", "/v1/templates", params={"agent": mine["slug"]})).json()["items"]
    assert [t["id"] for t in scoped] == [own["id"]]
    again = await team.request("POST", "/v1/templates", json={"name": "tone", "body": "x"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "template_exists"


async def test_an_empty_prompt_uses_the_default_template_its_own_scopes_first(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    first = await _template(team, name="house", body="House rules for {{ user.name }}.", is_default=True)
    second = await _template(team, name="house-2", body="Newer house rules.", is_default=True)
    assert (await team.request("GET", f"/v1/templates/{first['id']}")).json()["is_default"] is False
    assert second["is_default"] is True  # one default per scope: the newer one cleared the first

    plain = await team.create_agent(model)
    special = await team.create_agent(model)
    await _template(team, name="special", body="Special rules.", agent=special["slug"], is_default=True)
    assert (await team.request("POST", f"/v1/agents/{special['slug']}/publish", json={})).status_code == 201
    fake_llm.script(model, [Step(text="ok")] * 3)
    await _talk(team, await _open(team, plain["slug"]))
    assert _system(fake_llm, model) == "Newer house rules."
    await _talk(team, await _open(team, special["slug"]))
    assert _system(fake_llm, model) == "Special rules."

    changed = await team.request("PATCH", f"/v1/templates/{first['id']}", json={"is_default": True})
    assert changed.status_code == 200 and changed.json()["is_default"] is True
    assert (await team.request("GET", f"/v1/templates/{second['id']}")).json()["is_default"] is False
    version = (await team.request("POST", f"/v1/agents/{plain['slug']}/publish", json={})).json()
    assert version["definition"]["default_template"] == "house"
    await _talk(team, await _open(team, plain["slug"], user_name="Cy"))
    assert _system(fake_llm, model) == "House rules for Cy."


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__ }}",
        "ok\n{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ user|attr('__dict__') }}",
    ],
)
async def test_escapes_from_the_sandbox_are_refused_when_saved(
    team: TeamClient, model: str, body: str
) -> None:
    refused = await _template(team, 422, name="evil", body=body)
    assert refused["error"]["code"] == "template_invalid"
    detail = refused["error"]["details"][0]
    assert (
        detail["field"] == "body" and detail["template"] == "evil" and detail["line"] == body.count("\n") + 1
    )
    assert "not allowed" in refused["error"]["message"]
    response = await team.request(
        "POST", "/v1/agents", json={"slug": "evil-agent", "name": "E", "model": model, "system_prompt": body}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "template_invalid"
    assert response.json()["error"]["details"][0]["field"] == "system_prompt"
    assert (await team.request("GET", "/v1/agents/evil-agent")).status_code == 404  # nothing written
    assert (await team.request("GET", "/v1/templates")).json()["items"] == []


async def test_a_syntax_error_or_unknown_variable_is_a_422_naming_the_template_and_line(
    team: TeamClient, model: str
) -> None:
    broken = await _template(team, 422, name="greeting", body="Hello\n\n{{ user.name }\n")
    assert broken["error"]["message"].startswith("template 'greeting' line 3:")
    assert broken["error"]["details"][0] | {"message": ""} == {
        "field": "body",
        "message": "",
        "template": "greeting",
        "line": 3,
    }
    unknown = await _template(team, 422, name="greeting", body="Hi\n{{ customer }}")
    assert unknown["error"]["message"] == (
        "template 'greeting' line 2: unknown variable 'customer' (known: channel, conversation, now, user)"
    )
    # A variable becomes known once an agent declares it (for a global template, any agent's).
    agent = await team.create_agent(model, variables={"customer": "you"})
    fine = await _template(team, name="greeting", body="Hi\n{{ customer }}")
    other = await team.create_agent(model)
    refused = await team.request(
        "PATCH", f"/v1/agents/{other['slug']}", json={"system_prompt": 'Say:\n{% include "greeting" %}'}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith(
        "template 'greeting' line 2: unknown variable 'customer'"
    )
    assert refused.json()["error"]["details"][0]["field"] == "system_prompt"
    accepted = await team.request(
        "PATCH", f"/v1/agents/{agent['slug']}", json={"system_prompt": 'Say:\n{% include "greeting" %}'}
    )
    assert accepted.status_code == 200, accepted.text
    missing = await team.request(
        "PATCH", f"/v1/agents/{agent['slug']}", json={"system_prompt": '{% include "nope" %}'}
    )
    assert (
        missing.json()["error"]["message"]
        == "system prompt line 1: includes 'nope', which is not a template here"
    )
    loop = await team.request(
        "PATCH", f"/v1/templates/{fine['id']}", json={"body": '{% include "greeting" %}'}
    )
    assert loop.status_code == 422 and "includes itself" in loop.json()["error"]["message"]
    zone = await team.request("PATCH", f"/v1/agents/{agent['slug']}", json={"timezone": "Mars/Olympus"})
    assert zone.status_code == 422 and zone.json()["error"]["details"][0]["field"] == "timezone"
    shadow = await team.request("PATCH", f"/v1/agents/{agent['slug']}", json={"variables": {"user": "x"}})
    assert shadow.status_code == 422 and shadow.json()["error"]["details"][0]["field"] == "variables"
    assert (await team.request("GET", f"/v1/agents/{agent['slug']}")).json()["timezone"] == "UTC"


async def test_a_prompt_that_fails_on_a_conversations_values_fails_the_turn_and_not_the_conversation(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    # Which attribute it reads comes from the conversation: `id` in the trial render, so the save passes.
    prompt = "For {{ user.name }}: {{ user | attr(conversation.metadata.get('field', 'name')) }}"
    agent = await team.create_agent(model, system_prompt=prompt)
    fake_llm.script(model, [Step(text="fine")] * 2)
    conversation = await _open(team, agent["slug"], user_name="Di", field="__class__")
    failed = await _talk(team, conversation)
    assert failed["status"] == "failed" and failed["error"]["code"] == "prompt_render_failed"
    assert "'__class__' of a dict is not allowed" in failed["error"]["message"]
    assert "system prompt line 1" in failed["error"]["message"]
    assert fake_llm.requests(model) == []  # the model was never asked with a half-rendered prompt

    fixed = await team.request(
        "PATCH", f"/v1/agents/{agent['slug']}", json={"system_prompt": "For {{ user.name }}."}
    )
    assert fixed.status_code == 200
    assert (await team.request("POST", f"/v1/agents/{agent['slug']}/publish", json={})).status_code == 201
    upgraded = await team.request("POST", f"/v1/conversations/{conversation}/upgrade", json={})
    assert upgraded.status_code == 200, upgraded.text
    answered = await _talk(team, conversation, "again")
    assert answered["status"] == "completed" and answered["reply"]["content"] == "fine"
    assert _system(fake_llm, model) == "For Di."


async def test_a_published_version_keeps_its_template_after_the_global_one_is_edited(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    signature = await _template(team, name="signature", body="Sign as Steward v1.")
    agent = await team.create_agent(model, system_prompt='Answer briefly. {% include "signature" %}')
    slug = agent["slug"]
    version = (await team.request("GET", f"/v1/agents/{slug}/versions/1")).json()
    assert version["definition"]["templates"] == {"signature": "Sign as Steward v1."}
    pinned = await _open(team, slug)
    draft = await team.request(
        "POST", "/v1/conversations", json={"agent": slug, "metadata": {}, "version_policy": "latest"}
    )
    latest = str(draft.json()["id"])
    edited = await team.request(
        "PATCH", f"/v1/templates/{signature['id']}", json={"body": "Sign as Steward v2."}
    )
    assert edited.status_code == 200
    assert (await team.request("GET", f"/v1/agents/{slug}")).json()["draft_changed"] is True
    diff = (await team.request("GET", f"/v1/agents/{slug}/versions/1/diff/draft")).json()["changes"]
    assert diff == [
        {
            "field": "templates",
            "from": {"signature": "Sign as Steward v1."},
            "to": {"signature": "Sign as Steward v2."},
        }
    ]

    fake_llm.script(model, [Step(text="ok")] * 3)
    await _talk(team, pinned)
    assert _system(fake_llm, model) == "Answer briefly. Sign as Steward v1."
    assert (await team.request("POST", f"/v1/agents/{slug}/publish", json={})).status_code == 201
    await _talk(team, latest)
    assert _system(fake_llm, model) == "Answer briefly. Sign as Steward v2."
    assert (await team.request("DELETE", f"/v1/templates/{signature['id']}")).status_code == 204
    await _talk(team, pinned)  # v1 still has its own copy
    assert _system(fake_llm, model) == "Answer briefly. Sign as Steward v1."


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_adds_templates_and_an_agents_zone_and_variables_and_goes_back(
    backend: str, tmp_path: Path
) -> None:
    with migrating(backend, tmp_path, "0007_agent_versions") as (config, engine):
        now = utcnow()
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO teams (id, slug, name, created_at) VALUES ('t', 't', 'T', :now)"),
                {"now": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO agents (id, team_id, slug, name, model, system_prompt, tools, temperature,"
                    " max_tool_rounds, double_texting, tool_policies, approvals, created_at, updated_at)"
                    " VALUES ('a', 't', 'a', 'A', 'm', 'before', '[]', 0.5, 4, 'enqueue', '{}', '{}',"
                    " :now, :now)"
                ),
                {"now": now},
            )
        command.upgrade(config, "0008_prompt_templates")
        insert = sa.text(
            "INSERT INTO prompt_templates"
            " (id, team_id, agent_id, name, body, is_default, created_at, updated_at)"
            " VALUES (:id, 't', :agent, :name, 'x', :default, :now, :now)"
        )
        with engine.begin() as conn:
            row = conn.execute(sa.text("SELECT timezone, variables FROM agents")).one()
            assert row[0] == "UTC" and (row[1] if isinstance(row[1], dict) else json.loads(row[1])) == {}
            for i, (agent, name, default) in enumerate(
                [(None, "g", True), ("a", "g", True), (None, "h", False), ("a", "h", False)]
            ):
                conn.execute(
                    insert, {"id": f"p{i}", "agent": agent, "name": name, "default": default, "now": now}
                )
        for agent, name, default in [
            (None, "g", False),
            ("a", "g", False),
            (None, "z", True),
            ("a", "z", True),
        ]:
            with (
                pytest.raises(sa.exc.IntegrityError),
                engine.begin() as conn,
            ):  # a name twice, a second default
                conn.execute(
                    insert, {"id": "dup", "agent": agent, "name": name, "default": default, "now": now}
                )
        command.downgrade(config, "0007_agent_versions")
        with engine.connect() as conn:
            assert "prompt_templates" not in sa.inspect(conn).get_table_names()
            assert "timezone" not in {c["name"] for c in sa.inspect(conn).get_columns("agents")}


def test_the_render_is_the_prompt_itself_when_there_is_nothing_to_render() -> None:
    from schemas.prompts import SYSTEM_PROMPT, render, sample_context

    values = sample_context("UTC", {}, datetime.now(UTC))
    assert render(SYSTEM_PROMPT, "Plain text, kept as it is.\n", {}, values) == "Plain text, kept as it is.\n"
    assert render(SYSTEM_PROMPT, "Hi {{ user.name }}\n", {}, values) == "Hi Sample User\n"


async def test_the_templates_page_creates_a_template_and_marks_the_line_a_save_refused(
    browser: Browser, live_url: str, team: TeamClient
) -> None:
    page = await browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        await page.goto(f"{live_url}/templates")
        await page.fill("#key", team.key)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{live_url}/templates")
        await expect(page.locator("#no-templates")).to_be_visible()
        await page.get_by_role("link", name="New template").click()
        await page.wait_for_url(f"{live_url}/templates/new")

        await page.fill("#name", "greeting")
        long_line = "Hello {{ user.name }}. " + "Say it kindly, and say it briefly. " * 8
        await page.fill("#body", f"{long_line}\n\nToday is {{{{ now }}\nBye.")
        await page.get_by_role("button", name="Create").click()
        problem = page.locator("#body-problem")
        await expect(problem).to_be_visible()
        await expect(problem.locator(".where")).to_have_text("Line 3")
        await expect(page.locator("#gutter .bad")).to_have_text("3")
        await expect(page.locator("#backdrop mark")).to_have_text("Today is {{ now }")
        marker, band = page.locator("#gutter .bad"), page.locator("#backdrop mark")
        marker_box, band_box = await marker.bounding_box(), await band.bounding_box()
        assert marker_box is not None and band_box is not None
        middle = [box["y"] + box["height"] / 2 for box in (marker_box, band_box)]
        assert abs(middle[0] - middle[1]) < 3  # the number and the marked line sit side by side
        await page.screenshot(path=str(SHOTS / "editor-refused.png"), full_page=True)
        assert (await team.request("GET", "/v1/templates")).json()["items"] == []  # nothing saved

        await page.get_by_role("button", name="go to line").click()
        await page.fill("#body", f"{long_line}\n\nToday is {{{{ now }}}}.\nBye.")
        await expect(problem).to_be_hidden()
        await page.check("#is_default")
        await page.get_by_role("button", name="Create").click()
        await page.wait_for_url(re.compile(r"/templates/[0-9a-f]{32}$"))
        [saved] = (await team.request("GET", "/v1/templates")).json()["items"]
        assert saved["name"] == "greeting" and saved["is_default"] is True and saved["agent"] is None
        assert page.url.endswith(f"/templates/{saved['id']}")

        await page.fill("#body", "Hi\n{{ customer }}")
        await page.get_by_role("button", name="Save").click()
        await expect(problem).to_contain_text("unknown variable 'customer'")
        await expect(page.locator("#gutter .bad")).to_have_text("2")
        await page.fill("#body", "Hi {{ user.name }}, welcome.")
        await page.get_by_role("button", name="Save").click()
        await expect(page.locator("#saved")).to_have_text("Saved")
        got = (await team.request("GET", f"/v1/templates/{saved['id']}")).json()
        assert got["body"] == "Hi {{ user.name }}, welcome."

        await page.get_by_role("link", name="← All templates").click()
        row = page.locator(f"tr[data-template='{saved['id']}']")
        await expect(row.locator(".name")).to_have_text("greeting default")
        await expect(row.locator(".scope")).to_have_text("global")
        await page.screenshot(path=str(SHOTS / "list.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})  # a phone
        await page.goto(f"{live_url}/templates/{saved['id']}")
        await expect(page.locator("#body")).to_have_value("Hi {{ user.name }}, welcome.")
        await page.screenshot(path=str(SHOTS / "editor-phone.png"), full_page=True)
    finally:
        await page.close()


async def test_a_telegram_sender_is_the_users_name_and_the_channel_its_type(
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    fake_telegram: FakeTelegram,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    agent = await team.create_agent(model, system_prompt="Hi {{ user.name }}, on {{ channel.type }}.")
    channel = (await telegram_channel(team, agent["slug"], fake_telegram))["id"]
    secret = await register_webhook(settings, sessions, channel, fake_telegram)
    chat = new_chat()
    fake_llm.script(model, [Step(text="hello")])
    await send_telegram_text(http, fake_telegram, channel, secret, chat, "hi there")
    await fake_telegram.replies(chat)
    assert _system(fake_llm, model) == "Hi @ana, on telegram."


async def test_only_admins_write_templates_and_every_team_sees_only_its_own(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
) -> None:
    created = await _template(team, name="house", body="House rules.")
    viewer = await add_key(sessions, team, Role.VIEWER)
    assert (await viewer.request("GET", f"/v1/templates/{created['id']}")).json()["body"] == "House rules."
    refused = await viewer.request("POST", "/v1/templates", json={"name": "x", "body": "y"})
    assert refused.status_code == 403
    patched = await viewer.request("PATCH", f"/v1/templates/{created['id']}", json={"body": "z"})
    assert patched.status_code == 403
    other = await new_team(sessions, http)
    assert (await other.request("GET", "/v1/templates")).json()["items"] == []
    assert (await other.request("GET", f"/v1/templates/{created['id']}")).status_code == 404
    assert (await other.request("DELETE", f"/v1/templates/{created['id']}")).status_code == 404
    unknown = await team.request("GET", "/v1/templates", params={"agent": "no-such-agent"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "agent_not_found"
    nulled = await team.request("PATCH", f"/v1/templates/{created['id']}", json={"body": None})
    assert nulled.status_code == 422 and nulled.json()["error"]["details"][0]["field"] == "body"
    assert (await team.request("DELETE", f"/v1/templates/{created['id']}")).status_code == 204
    assert (await team.request("GET", f"/v1/templates/{created['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        (
            "{% for i in range(100) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
            "loops may make at most",
        ),
        ("{{ 'x' * 1000000 }}", "'*' may build at most"),
        ("{{ 'x'.center(100000000) }}", "numbers above 100000"),
        ("{{ 'x'|center(100000000) }}", "numbers above 100000"),
        ("{{ '{:>99999999}'.format(1) }}", "format widths"),
        ("{{ '%99999999s' % 1 }}", "format widths"),
        ("{{ ('x' * 10000)|replace('x', 'x' * 10000) }}", "'replace' may build at most"),
        ("{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}", "renders to more than 100000 characters"),
        ("{{ 2 ** 100000 }}", "exponents above 100"),
        ("{{ 'abc'|truncate(2) }}", "expected length >= 3"),
    ],
)
def test_a_render_that_would_build_something_huge_or_fail_inside_jinja_is_refused(
    body: str, refusal: str
) -> None:
    from schemas.prompts import PromptProblem, render, sample_context

    with pytest.raises(PromptProblem) as refused:
        render("big", body, {}, sample_context("UTC", {}, datetime.now(UTC)))
    assert refusal in str(refused.value) and str(refused.value).startswith("template 'big'")


def test_macros_are_refused_since_they_are_the_one_way_to_recurse() -> None:
    from schemas.prompts import BUILTINS, PromptProblem, check

    with pytest.raises(PromptProblem, match="line 2: macros are not supported"):
        check("m", "ok\n{% macro twice(s) %}{{ s ~ s }}{% endmacro %}", BUILTINS, [])


async def test_the_openai_endpoints_user_is_the_users_name_and_a_draft_renders_its_templates_live(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live_url: str
) -> None:
    footer = await _template(team, name="footer", body="(v1)")
    agent = await team.create_agent(model, system_prompt='Serving {{ user.name }}. {% include "footer" %}')
    client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=team.key, max_retries=0)
    fake_llm.script(model, [Step(text="ok")] * 2)
    await client.chat.completions.create(
        model=agent["slug"], messages=[{"role": "user", "content": "hi"}], user="zoe"
    )
    assert _system(fake_llm, model) == "Serving zoe. (v1)"
    await team.request("PATCH", f"/v1/templates/{footer['id']}", json={"body": "(v2)"})
    await client.chat.completions.create(
        model=f"{agent['slug']}@draft", messages=[{"role": "user", "content": "hi"}], user="zoe"
    )
    assert _system(fake_llm, model) == "Serving zoe. (v2)"  # the draft reads the templates as they are


async def test_a_version_frozen_before_templates_shows_its_prompt_as_written() -> None:
    from activities.llm_context import Definition
    from schemas.tables import Agent, Conversation

    old = {  # what `0007_agent_versions` and publishes before templates froze
        "model": "m",
        "system_prompt": "Reply as {{ json }}",
        "tools": [],
        "tool_policies": {},
        "approvals": {},
        "temperature": 0.2,
        "max_tool_rounds": 8,
    }
    definition = Definition.of(Agent(id="a"), "v1", old)
    assert definition.literal and definition.timezone == "UTC" and definition.templates == {}
    rendered = await definition.rendered(None, Conversation(id="c"))  # type: ignore[arg-type]
    assert rendered.system_prompt == "Reply as {{ json }}"
    current = Definition.of(Agent(id="a"), "v2", {**old, "templates": {}, "default_template": None})
    assert not current.literal
