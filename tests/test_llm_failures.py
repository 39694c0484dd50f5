"""Provider errors: transient ones are retried by Temporal (honouring Retry-After), others fail fast."""

from __future__ import annotations

from tests.fakes.openai_server import FakeOpenAI, Step
from tests.support import TeamClient


async def test_rate_limit_is_retried_after_the_advertised_delay(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(status=429, headers={"Retry-After": "2"}), Step(text="worth the wait")])

    response = await team.send(conversation, "hello")

    assert response.status_code == 200, response.text
    assert response.json()["reply"]["content"] == "worth the wait"
    first, second = fake_llm.requests(model)
    # Temporal's own first retry would come after 1 s; the provider asked for 2 s.
    assert second.received_at - first.received_at >= 1.9


async def test_server_errors_are_retried_until_the_model_answers(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(status=500), Step(status=503), Step(text="recovered")])

    response = await team.send(conversation, "hello")

    assert response.json()["reply"]["content"] == "recovered"
    assert len(fake_llm.requests(model)) == 3
    assistant = [m for m in await team.messages(conversation) if m["role"] == "assistant"]
    assert [m["content"] for m in assistant] == ["recovered"]


async def test_auth_failure_fails_the_turn_at_once_with_a_clear_error(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(status=401, error_message="Incorrect API key provided")])

    response = await team.send(conversation, "hello")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "failed"
    assert body["error"]["code"] == "llm_auth_failed"
    assert "401" in body["error"]["message"] and "Incorrect API key" in body["error"]["message"]
    assert len(fake_llm.requests(model)) == 1
    state = await team.conversation(conversation)
    assert state["status"] == "failed"
    assert state["last_error"]["code"] == "llm_auth_failed"
    transcript = await team.messages(conversation)
    assert transcript[-1]["role"] == "system"
    assert "llm_auth_failed" in transcript[-1]["content"]

    # The next message is a fresh turn that can succeed and clears the error.
    fake_llm.script(model, [Step(text="back")])
    retry = await team.send(conversation, "again")
    assert retry.json()["status"] == "completed"
    assert (await team.conversation(conversation))["last_error"] is None
