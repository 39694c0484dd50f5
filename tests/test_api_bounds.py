"""Out-of-range integers are 422 in the error shape, never a database error; the document says so."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from schemas.api import MAX_DB_INT
from tests.support import TeamClient

TOO_BIG = [MAX_DB_INT + 1, 2**70]
"""2**31 overflows PostgreSQL's INTEGER; 2**70 any 64-bit integer (SQLite's too)."""


def _refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "validation_error", body
    assert [d["field"] for d in body["error"]["details"]] == [field], body


@pytest.mark.parametrize("value", TOO_BIG)
async def test_ids_and_cursors_beyond_32_bits_are_422_not_500(
    team: TeamClient, model: str, value: int
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    _refused(
        await team.request("GET", f"/v1/conversations/{conversation}/messages?after={value}"), "query.after"
    )
    _refused(await team.request("GET", f"/v1/dead-letters?cursor={value}"), "query.cursor")
    _refused(await team.request("POST", f"/v1/dead-letters/{value}/retry"), "path.delivery_id")
    _refused(await team.request("POST", f"/v1/dead-letters/{value}/discard"), "path.delivery_id")
    _refused(await team.request("DELETE", f"/v1/dead-letters/{value}"), "path.delivery_id")
    _refused(
        await team.request("GET", f"/v1/conversations/{conversation}/events?after={value}"), "query.after"
    )
    # The same client's next request is answered as usual: nothing was left broken.
    listed = await team.request("GET", f"/v1/conversations/{conversation}/messages")
    assert listed.status_code == 200 and listed.json()["items"] == []


async def test_the_largest_32_bit_values_reach_the_database_and_are_answered(
    team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    after = await team.request("GET", f"/v1/conversations/{conversation}/messages?after={MAX_DB_INT}")
    assert after.status_code == 200 and after.json()["items"] == []
    page = await team.request("GET", f"/v1/dead-letters?cursor={MAX_DB_INT}")
    assert page.status_code == 200 and page.json()["items"] == []
    missing = await team.request("POST", f"/v1/dead-letters/{MAX_DB_INT}/retry")
    assert missing.status_code == 404 and missing.json()["error"]["code"] != "validation_error"
    gone = await team.request("DELETE", f"/v1/dead-letters/{MAX_DB_INT}")
    assert gone.status_code == 404


async def test_a_body_that_is_not_utf8_is_422_like_malformed_json(team: TeamClient) -> None:
    response = await team.request(
        "POST", "/v1/agents", content=b'{"slug": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["message"].startswith("body is not valid JSON")
    assert error["details"] == [{"field": "body", "message": "it is not UTF-8 text", "type": "json_invalid"}]


def _responses(document: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (path, method, status, response)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
    ]


async def test_every_error_in_the_document_is_the_one_error_shape(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    errors = [(p, m, s, r) for p, m, s, r in _responses(document) if s.startswith("4") or s == "503"]
    assert len(errors) > 100
    for path, method, status, response in errors:
        schema = response["content"]["application/json"]["schema"]
        if (path, status) != ("/readyz", "503"):  # readiness names what is down, by design
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)


async def test_the_document_declares_the_statuses_shared_machinery_answers(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    retry = document["paths"]["/v1/dead-letters/{delivery_id}/retry"]["post"]
    assert {"401", "403", "404", "409", "422", "503"} <= set(retry["responses"])
    (delivery_id,) = retry["parameters"]
    assert delivery_id["schema"]["maximum"] == MAX_DB_INT
    send = document["paths"]["/v1/conversations/{conversation_id}/messages"]["post"]
    assert {"401", "403", "404", "409", "413", "422", "429", "503"} <= set(send["responses"])
    hook = document["paths"]["/channels/telegram/{channel_id}"]["post"]
    assert set(hook["responses"]) == {"200", "400", "403", "404", "413"}
    listing = document["paths"]["/v1/approvals"]["get"]["responses"]
    assert "404" in listing and "cursor" in listing["422"]["x-checked-beyond-schema"]
    timer = document["components"]["schemas"]["ApprovalSettings"]["properties"]["remind_after"]
    assert timer["exclusiveMinimum"] == 0 and "gt" not in timer


async def test_a_nul_character_is_422_not_a_database_error(team: TeamClient) -> None:
    in_path = await team.request("GET", "/v1/agents/a%00b")
    assert in_path.status_code == 422, in_path.text
    assert (
        in_path.json()["error"]["code"] == "validation_error" and "NUL" in in_path.json()["error"]["message"]
    )
    in_ids = await team.request(
        "POST", "/v1/approvals/decisions", json={"ids": ["a\u0000b"], "decision": "approve"}
    )
    _refused(in_ids, "ids.0")


async def test_a_message_with_a_nul_character_is_refused_before_its_turn_starts(
    team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    sent = await team.request("POST", f"/v1/conversations/{conversation}/messages", json={"text": "a\u0000b"})
    _refused(sent, "text")
    assert await team.messages(conversation) == []
