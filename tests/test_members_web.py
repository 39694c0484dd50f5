"""The members pages in real Chromium: sign in with a password, invite someone who joins, manage keys."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import Role
from tests.members import add_person
from tests.support import TeamClient

SHOTS = "/tmp/shots-members"


async def _password_sign_in(page: Page, live_url: str, email: str, password: str, next_path: str) -> None:
    await page.goto(f"{live_url}{next_path}")
    await expect(page).to_have_url(f"{live_url}/login?next={next_path}")
    await page.fill("#email", email)
    await page.fill("#password", password)
    await page.click("#password-submit")
    await expect(page).to_have_url(f"{live_url}{next_path}")


async def test_an_admin_invites_someone_who_joins_and_signs_in(
    browser: Browser, live_url: str, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await add_person(sessions, team.team_id, Role.ADMIN, "Grace Admin")
    context = await browser.new_context()
    page = await context.new_page()
    newcomer_context = await browser.new_context()
    newcomer = await newcomer_context.new_page()
    try:
        await page.goto(f"{live_url}/login")
        await page.fill("#email", admin.email)
        await page.fill("#password", "not it at all")
        await page.click("#password-submit")
        await expect(page.locator("#login-error")).to_contain_text("do not match")
        await page.screenshot(path=f"{SHOTS}/login-error.png", full_page=True)

        await _password_sign_in(page, live_url, admin.email, admin.password, "/settings/members")
        await expect(page.locator("[data-testid=signed-in-as]")).to_have_text("Grace Admin")
        await page.fill("#invite-email", "linus@example.test")
        await page.select_option("#invite-role", "viewer")
        await page.click("#invite-button")
        link = (await page.locator("[data-testid=new-link]").text_content() or "").strip()
        assert "/invite/" in link
        await expect(page.locator("#invites")).to_contain_text("linus@example.test")
        await page.screenshot(path=f"{SHOTS}/members-invite.png", full_page=True)

        path = link[link.index("/invite/") :]
        await newcomer.goto(f"{live_url}{path}")
        await expect(newcomer.locator("h1")).to_have_text("Join the team")
        await newcomer.screenshot(path=f"{SHOTS}/invite-accept.png", full_page=True)
        await newcomer.fill("#display_name", "Linus Newcomer")
        await newcomer.fill("#password", "a long enough password")
        await newcomer.click("#accept")
        await expect(newcomer.locator("[data-testid=signed-in-as]")).to_have_text("Linus Newcomer")
        await expect(newcomer.locator(".who .role")).to_have_text("viewer")

        await page.goto(f"{live_url}/settings/members")
        await expect(page.locator("#members")).to_contain_text("Linus Newcomer")
        await expect(page.locator("#invites")).to_have_count(0)

        await newcomer.click("text=Sign out")
        await expect(newcomer).to_have_url(f"{live_url}/login")
        await _password_sign_in(newcomer, live_url, "linus@example.test", "a long enough password", "/inbox")
        await newcomer.goto(f"{live_url}/account")
        await expect(newcomer.locator("#sessions tbody tr")).to_have_count(1)  # the signed-out one ended
        await newcomer.screenshot(path=f"{SHOTS}/account.png", full_page=True)
    finally:
        await context.close()
        await newcomer_context.close()


async def test_the_keys_page_creates_a_key_shown_once_and_revokes_it(
    browser: Browser, live_url: str, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    admin = await add_person(sessions, team.team_id, Role.ADMIN, "Key Keeper")
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await _password_sign_in(page, live_url, admin.email, admin.password, "/settings/keys")
        await page.fill("#key-name", "nightly export")
        await page.select_option("#key-role", "viewer")
        await page.fill("#key-expires", "2099-12-31")
        await page.click("#create-key-button")
        key = (await page.locator("[data-testid=new-key]").text_content() or "").strip()
        assert key.startswith("stw_")
        row = page.locator("#keys tbody tr", has_text="nightly export")
        await expect(row).to_contain_text("2099-12-31")
        await expect(row.locator(".last-used")).to_have_text("never")
        await page.screenshot(path=f"{SHOTS}/keys-created.png", full_page=True)

        async with httpx.AsyncClient(base_url=live_url) as client:
            headers = {"Authorization": f"Bearer {key}"}
            assert (await client.get("/v1/agents", headers=headers)).status_code == 200
            await page.goto(f"{live_url}/settings/keys")
            await expect(page.locator("[data-testid=new-key]")).to_have_count(0)  # shown once
            await expect(row.locator(".last-used")).to_have_text("just now")
            await row.get_by_role("button", name="Revoke nightly export").click()
            await expect(row).to_contain_text("revoked")
            assert (await client.get("/v1/agents", headers=headers)).status_code == 401
        await page.screenshot(path=f"{SHOTS}/keys-revoked.png", full_page=True)
    finally:
        await context.close()


async def test_the_header_switches_a_person_between_their_teams(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    from api.services import users
    from schemas.tables import Team, User
    from tests.support import new_team

    other = await new_team(sessions, http)
    person = await add_person(sessions, team.team_id, Role.VIEWER, "Tess Twoteams")
    async with sessions() as session:
        user, second = await session.get(User, person.user_id), await session.get(Team, other.team_id)
        assert user is not None and second is not None
        await users.add_membership(session, user, second, Role.OPERATOR)
        await session.commit()
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await _password_sign_in(page, live_url, person.email, person.password, "/conversations")
        start = await page.locator(".who .role").text_content()
        await page.select_option("#team-choice", other.team_id if start == "viewer" else team.team_id)
        await page.screenshot(path=f"{SHOTS}/team-switcher.png")
        await page.click("#team-switcher button")
        await expect(page.locator(".who .role")).to_have_text("operator" if start == "viewer" else "viewer")
        await expect(page.locator("#team-choice")).to_have_value(
            other.team_id if start == "viewer" else team.team_id
        )
    finally:
        await context.close()
