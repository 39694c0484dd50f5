"""Team members: invitations, password sign-in and its limit, sessions, roles, the last admin, resets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import SESSION_COOKIE
from api.services import users
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import WebSession, utcnow
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.members import PASSWORD, WEB, add_person, sign_in, web_client
from tests.support import TeamClient, add_key, eventually, migrating
from tests.test_approvals import book, booking_conversation, free_slots, pending, status_is


def _link_token(link: str) -> str:
    return link.rsplit("/", 1)[1]


async def test_invite_accept_sign_in_and_approve_names_the_person_in_the_audit(
    team: TeamClient,
    app: FastAPI,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    invited = await team.request(
        "POST", "/v1/invites", json={"email": "Ada@Example.test", "role": "operator"}
    )
    assert invited.status_code == 201, invited.text
    link = invited.json()["link"]
    assert invited.json()["email"] == "ada@example.test" and "/invite/" in link
    listed = (await team.request("GET", "/v1/invites")).json()["items"]
    assert [i["email"] for i in listed] == ["ada@example.test"] and "link" not in listed[0]

    async with web_client(app) as web:
        form = await web.get(f"/invite/{_link_token(link)}")
        assert form.status_code == 200 and "operator" in form.text
        short = await web.post(
            f"/invite/{_link_token(link)}", data={"display_name": "Ada", "password": "short"}
        )
        assert short.status_code == 422 and "at least 10" in short.text
        joined = await web.post(
            f"/invite/{_link_token(link)}", data={"display_name": "Ada Lovelace", "password": PASSWORD}
        )
        assert joined.status_code == 303 and SESSION_COOKIE in joined.cookies
        again = await web.post(
            f"/invite/{_link_token(link)}", data={"display_name": "X", "password": PASSWORD}
        )
        assert again.status_code == 404  # single use
        assert (await team.request("GET", "/v1/invites")).json()["items"] == []

    async with web_client(app) as web:
        signed = await sign_in(web, "ADA@example.test")
        assert signed.status_code == 303 and signed.headers["location"] == "/inbox"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        me = (await web.get("/v1/me")).json()
        assert me["kind"] == "person" and me["name"] == "Ada Lovelace" and me["role"] == "operator"
        assert [t["team_id"] for t in me["teams"]] == [team.team_id]

        conversation = await booking_conversation(team, model)
        slot = (await free_slots(sessions, team.team_id))[0]
        fake_llm.script(model, [book(slot), Step(text="You're booked!")])
        await team.send(conversation, "book me in", timeout=2)
        [item] = await pending(team, conversation)
        decided = await web.post(
            f"/v1/approvals/{item['id']}/decision", json={"decision": "approve", "comment": "ok"}, headers=WEB
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["decided_by"] == "Ada Lovelace"
        await eventually(lambda: status_is(team, conversation, "idle"))
        audit = (await team.request("GET", f"/v1/approvals/{item['id']}")).json()["audit"]
        assert [(e["action"], e["actor"]) for e in audit] == [
            ("requested", "system"),
            ("approved", "Ada Lovelace"),
        ]
        page = await web.get(f"/inbox/{item['id']}")
        assert page.status_code == 200 and "Ada Lovelace" in page.text

        taken = await web.post(
            f"/v1/conversations/{conversation}/takeover", json={"reason": "mine"}, headers=WEB
        )
        assert taken.status_code == 200, taken.text
        said = await web.post(
            f"/v1/conversations/{conversation}/operator-messages", json={"text": "Ada here"}, headers=WEB
        )
        assert said.status_code == 201 and said.json()["author"] == "Ada Lovelace"
        view = await web.get(f"/conversations/{conversation}")
        assert "Ada Lovelace" in view.text
        assert (await team.conversation(conversation))["held_by"] == "Ada Lovelace"


async def test_wrong_password_and_unknown_email_answer_alike_and_both_count_toward_the_limit(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    person = await add_person(sessions, team.team_id, Role.VIEWER)
    async with web_client(app) as web:
        wrong = await sign_in(web, person.email, "not the password at all")
        unknown = await sign_in(web, "nobody-" + person.email, "not the password at all")
        assert wrong.status_code == unknown.status_code == 401
        assert users.BAD_CREDENTIALS in wrong.text.lower() and users.BAD_CREDENTIALS in unknown.text.lower()
        assert wrong.text.replace(person.email, "") == unknown.text.replace("nobody-" + person.email, "")
        assert SESSION_COOKIE not in wrong.cookies

        for _ in range(settings.sign_in_attempts - 1):
            assert (await sign_in(web, person.email, "still wrong password")).status_code == 401
        # The right password is refused now: the address is over its limit.
        limited = await sign_in(web, person.email)
        assert limited.status_code == 429 and "too many failed sign-ins" in limited.text.lower()
        for _ in range(settings.sign_in_attempts - 1):
            assert (await sign_in(web, "nobody-" + person.email, "guess")).status_code == 401
        assert (await sign_in(web, "nobody-" + person.email, "guess")).status_code == 429

    async with web_client(app) as elsewhere:  # another address is not blocked by that one
        assert (await sign_in(elsewhere, person.email)).status_code == 429  # the address still is
        other = await add_person(sessions, team.team_id, Role.VIEWER)
        assert (await sign_in(elsewhere, other.email)).status_code == 303


async def test_one_ip_is_limited_across_addresses(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    person = await add_person(sessions, team.team_id, Role.VIEWER)
    async with web_client(app) as web:
        for n in range(settings.sign_in_attempts * users.IP_FACTOR):
            assert (await sign_in(web, f"guess-{n}@example.test", "guess")).status_code == 401
        assert (await sign_in(web, person.email)).status_code == 429
    async with web_client(app) as other_ip:
        assert (await sign_in(other_ip, person.email)).status_code == 303


async def test_sessions_are_listed_and_a_revoked_one_loses_pages_and_api(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    person = await add_person(sessions, team.team_id, Role.OPERATOR, "Sam Operator")
    async with web_client(app) as laptop, web_client(app) as phone:
        await sign_in(laptop, person.email)
        await sign_in(phone, person.email)
        listed = (await laptop.get("/v1/me/sessions")).json()["items"]
        assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
        phone_session = next(s["id"] for s in listed if not s["current"])
        assert (await phone.get("/inbox")).status_code == 200

        ended = await laptop.delete(f"/v1/me/sessions/{phone_session}", headers=WEB)
        assert ended.status_code == 204
        assert (await phone.get("/v1/me")).status_code == 401
        page = await phone.get("/inbox")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert (await laptop.get("/v1/me")).status_code == 200

        other = await add_person(sessions, team.team_id, Role.OPERATOR)
        async with web_client(app) as theirs:
            await sign_in(theirs, other.email)
            mine = (await theirs.get("/v1/me/sessions")).json()["items"][0]["id"]
        assert (await laptop.delete(f"/v1/me/sessions/{mine}", headers=WEB)).status_code == 404

        out = await laptop.post("/logout", headers=WEB)
        assert out.status_code == 303
    async with sessions() as session:
        rows = (
            await session.execute(select(WebSession).where(WebSession.user_id == person.user_id))
        ).scalars()
        assert all(r.revoked_at is not None for r in rows)  # signing out revokes the row, not only the cookie


async def test_idle_and_absolute_expiry_end_a_session(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    from datetime import timedelta

    person = await add_person(sessions, team.team_id, Role.VIEWER)
    async with web_client(app) as idle, web_client(app) as old:
        await sign_in(idle, person.email)
        await sign_in(old, person.email)
        assert (await idle.get("/v1/me")).status_code == 200
        async with sessions() as session:
            rows = list(
                (
                    await session.execute(
                        select(WebSession)
                        .where(WebSession.user_id == person.user_id)
                        .order_by(WebSession.created_at)
                    )
                ).scalars()
            )
            rows[0].last_seen_at -= timedelta(hours=settings.session_idle_hours, minutes=1)
            rows[1].expires_at = rows[1].created_at
            await session.commit()
        app.state.key_cache.clear()
        assert (await idle.get("/v1/me")).status_code == 401
        assert (await old.get("/v1/me")).status_code == 401


async def test_roles_change_members_leave_and_the_last_admin_stays(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession], model: str
) -> None:
    admin = await add_person(sessions, team.team_id, Role.ADMIN, "Ann Admin")
    viewer = await add_person(sessions, team.team_id, Role.VIEWER, "Vic Viewer")
    async with web_client(app) as web, web_client(app) as vic:
        await sign_in(web, admin.email)
        await sign_in(vic, viewer.email)
        agent = await team.create_agent(model)
        published = await web.post(f"/v1/agents/{agent['slug']}/publish", json={"note": "mine"}, headers=WEB)
        assert published.status_code == 201 and published.json()["published_by"] == "Ann Admin"
        members = (await web.get("/v1/members")).json()["items"]
        assert {m["display_name"]: m["role"] for m in members} == {
            "Ann Admin": "admin",
            "Vic Viewer": "viewer",
        }
        assert (await vic.get("/v1/members")).status_code == 403

        demote = await web.patch(f"/v1/members/{admin.user_id}", json={"role": "operator"}, headers=WEB)
        assert demote.status_code == 409 and demote.json()["error"]["code"] == "last_admin"
        remove = await web.delete(f"/v1/members/{admin.user_id}", headers=WEB)
        assert remove.status_code == 409 and remove.json()["error"]["code"] == "last_admin"
        client_role = await web.patch(f"/v1/members/{viewer.user_id}", json={"role": "client"}, headers=WEB)
        assert client_role.status_code == 422

        promoted = await web.patch(f"/v1/members/{viewer.user_id}", json={"role": "admin"}, headers=WEB)
        assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
        assert (await vic.get("/v1/members")).status_code == 200  # the new role applies to the open session
        assert (await web.delete(f"/v1/members/{admin.user_id}", headers=WEB)).status_code == 204
        assert (await web.get("/v1/me")).status_code == 401  # removed: the session no longer reaches the team
        assert (await vic.delete(f"/v1/members/{viewer.user_id}", headers=WEB)).status_code == 409
        changes = (await vic.get("/v1/members/audit")).json()["items"]
        assert [(c["actor"], c["action"], c["actor_id"]) for c in changes[:2]] == [
            ("Ann Admin", "member.removed", admin.user_id),
            ("Ann Admin", "member.role", admin.user_id),
        ]
        assert admin.email in changes[0]["subject"] and "viewer → admin" in changes[1]["subject"]


async def test_a_reset_link_sets_a_new_password_once_and_ends_old_sessions(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    person = await add_person(sessions, team.team_id, Role.OPERATOR)
    async with web_client(app) as before:
        await sign_in(before, person.email)
        made = await team.request("POST", f"/v1/members/{person.user_id}/password-reset")
        assert made.status_code == 201
        token = _link_token(made.json()["link"])
        async with web_client(app) as web:
            assert (await web.get(f"/reset/{token}")).status_code == 200
            assert (await web.post(f"/reset/{token}", data={"password": "tiny"})).status_code == 422
            done = await web.post(f"/reset/{token}", data={"password": "a brand new passphrase"})
            assert done.status_code == 200 and "Password changed" in done.text
            assert (
                await web.post(f"/reset/{token}", data={"password": "yet another one!"})
            ).status_code == 404
            assert (await sign_in(web, person.email)).status_code == 401
            assert (await sign_in(web, person.email, "a brand new passphrase")).status_code == 303
        assert (await before.get("/v1/me")).status_code == 401
    stranger = await team.request("POST", "/v1/members/nobody/password-reset")
    assert stranger.status_code == 404


async def test_a_client_key_signed_into_the_console_sees_no_team_pages(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    client = await add_key(sessions, team, Role.CLIENT)
    viewer = await add_key(sessions, team, Role.VIEWER)
    for key, allowed in ((client.key, False), (viewer.key, True)):
        async with web_client(app) as web:
            signed = await web.post("/login", data={"key": key, "next": "/schedules"})
            assert signed.status_code == 303
            assert signed.cookies[SESSION_COOKIE].startswith("sts_")  # a session, not the key
            for path in ("/schedules", "/schedules/some-id", "/inbox/reports"):
                page = await web.get(path)
                if allowed:
                    assert page.status_code in (200, 404), (path, page.status_code)
                else:
                    assert page.status_code == 403 and "client" in page.text, path
            assert (await web.get("/settings/keys")).status_code == 403
            for path in ("/conversations", "/inbox", "/dead-letters"):  # refused before this issue too
                assert (await web.get(path)).status_code == (200 if allowed else 403), path
            assert (await web.get("/account")).status_code == 200


async def test_a_person_in_two_teams_switches_between_them(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
) -> None:
    from tests.support import new_team

    other = await new_team(sessions, http)
    person = await add_person(sessions, team.team_id, Role.VIEWER, "Two Teams")
    async with sessions() as session:
        from schemas.tables import Team, User

        user = await session.get(User, person.user_id)
        second = await session.get(Team, other.team_id)
        assert user is not None and second is not None
        await users.add_membership(session, user, second, Role.ADMIN)
        await session.commit()
    async with web_client(app) as web:
        await sign_in(web, person.email)
        first: dict[str, Any] = (await web.get("/v1/me")).json()
        assert len(first["teams"]) == 2
        start = first["team_id"]
        target = next(t for t in first["teams"] if t["team_id"] != start)
        account = await web.get("/account")
        assert "Switch to" in account.text and 'id="team-switcher"' in account.text  # also in the header
        switched = await web.post(
            "/account/team", data={"team_id": target["team_id"]}, headers={"Origin": "http://steward.test"}
        )
        assert switched.status_code == 303
        now = (await web.get("/v1/me")).json()
        assert now["team_id"] == target["team_id"] and now["role"] == target["role"]
        foreign = await web.post(
            "/account/team", data={"team_id": "nope"}, headers={"Origin": "http://steward.test"}
        )
        assert foreign.status_code == 404
        assert (
            await web.post("/account/team", data={"team_id": start})
        ).status_code == 403  # no origin: refused


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_adds_the_members_tables_and_goes_back(backend: str, tmp_path: Path) -> None:
    with migrating(backend, tmp_path, "0007_agent_versions") as (config, engine):
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO teams (id, slug, name, created_at) VALUES ('t', 't', 'T', :now)"),
                {"now": utcnow()},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO api_keys (id, team_id, name, role, key_hash, prefix, created_at)"
                    " VALUES ('k', 't', 'old key', 'admin', 'h', 'stw_', :now)"
                ),
                {"now": utcnow()},
            )
        command.upgrade(config, "0011_team_members")
        tables = set(sa.inspect(engine).get_table_names())
        assert {
            "users",
            "memberships",
            "web_sessions",
            "member_tokens",
            "sign_in_failures",
            "team_audit",
        } <= tables
        with engine.connect() as conn:
            key = conn.execute(
                sa.text("SELECT name, expires_at, last_used_at, created_by FROM api_keys")
            ).one()
            assert tuple(key) == ("old key", None, None, None)  # existing keys keep working, never expiring
        command.downgrade(config, "0007_agent_versions")
        assert "users" not in set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT name FROM api_keys")).scalar_one() == "old key"


async def test_the_dev_admin_is_ensured_with_the_password_it_is_given(
    team: TeamClient, app: FastAPI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from schemas.tables import Team

    email = f"dev-{team.team_id[:8]}@steward.local"
    for password in ("first dev password", "second dev password"):
        async with sessions() as session:
            found = await session.get(Team, team.team_id)
            assert found is not None
            await users.ensure_person(session, found, email, "Dev Admin", password, Role.ADMIN)
            await session.commit()
    async with web_client(app) as web:
        assert (await sign_in(web, email, "first dev password")).status_code == 401
        assert (await sign_in(web, email, "second dev password")).status_code == 303
        assert (await web.get("/v1/me")).json()["role"] == "admin"
