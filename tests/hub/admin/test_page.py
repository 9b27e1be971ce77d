"""The admin page in a real headless Chromium (Debian package) driven by Playwright."""

from __future__ import annotations

import httpx

from tests import ROOT
from tests.authserver import AuthServer
from tests.hub.admin.browser import needs_chromium

ARTIFACTS = ROOT / "test-artifacts"

pytestmark = needs_chromium



def test_sign_in_create_list_rotate_revoke(auth_server: AuthServer, page) -> None:
    admin_id, admin_secret = auth_server.create(name="Ops admin", type="other", scopes=["admin"])
    page.goto(f"{auth_server.url}/admin/")
    page.fill("input[name=client_id]", admin_id)
    page.fill("input[name=client_secret]", "wrong")
    page.click("button[type=submit]")
    assert "wrong secret" in page.inner_text(".alert")

    page.fill("input[name=client_secret]", admin_secret)
    page.click("button[type=submit]")
    assert "Signed in as Ops admin" in page.inner_text(".notice")
    cookie = next(c for c in page.context.cookies() if c["name"] == "rthub_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    form = page.locator("#create-client")
    form.locator("input[name=name]").fill("Adaptive Tutor")
    form.locator("select[name=type]").select_option("adaptive")
    form.locator("select[name=translator]").select_option("caliper")
    form.locator("textarea[name=grant]").fill('[{"orgs": ["MITx"], "event_types": ["problem_check"]}]')
    form.locator("button[type=submit]").click()
    assert "shown only once" in page.inner_text("main")
    client_id = page.inner_text("#client-id")
    secret = page.inner_text("#client-secret")
    assert auth_server.token(client_id, secret)

    page.goto(f"{auth_server.url}/admin/")
    row = page.locator(f"tr[data-client-id='{client_id}']")
    assert "Adaptive Tutor" in row.inner_text() and "caliper" in row.inner_text() and "active" in row.inner_text()

    row.locator("a").click()
    page.locator("#edit-client select[name=delivery]").select_option("webhook")
    page.locator("#edit-client button[type=submit]").click()
    assert "webhook_url" in page.inner_text(".alert")  # refused, field named
    page.locator("#edit-client input[name=webhook_url]").fill("https://hooks.example.org/rthub")
    page.locator("#edit-client button[type=submit]").click()
    assert "Saved." in page.inner_text(".notice")
    webhook_secret = page.locator("details.secret")  # folded until asked for
    assert not webhook_secret.locator("code").is_visible()
    webhook_secret.locator("summary").click()
    assert webhook_secret.locator("code").inner_text().startswith("whsec_")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-client.png"), full_page=True)

    page.click("#rotate")
    page.click("#confirm")
    new_secret = page.inner_text("#client-secret")
    assert new_secret != secret
    assert auth_server.token(client_id, new_secret)

    page.goto(f"{auth_server.url}/admin/clients/{client_id}")
    page.click("#revoke")
    page.click("#confirm")
    assert "Revoked Adaptive Tutor" in page.inner_text(".notice")
    assert "revoked" in page.locator(f"tr[data-client-id='{client_id}']").inner_text()
    page.screenshot(path=str(ARTIFACTS / "admin-page.png"), full_page=True)
    refused = auth_server.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, new_secret)
    )
    assert refused.status_code == 401


def test_forms_without_csrf_token_are_refused(auth_server: AuthServer, page) -> None:
    admin_id, admin_secret = auth_server.create(name="Ops admin", type="other", scopes=["admin"])
    page.goto(f"{auth_server.url}/admin/")
    page.fill("input[name=client_id]", admin_id)
    page.fill("input[name=client_secret]", admin_secret)
    page.click("button[type=submit]")
    session = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(
        f"{auth_server.url}/admin/clients",
        data={"name": "evil", "type": "other", "translator": "xapi"},
        cookies=session,
    )
    assert forged.status_code == 403
    wrong = httpx.post(
        f"{auth_server.url}/admin/clients",
        data={"name": "evil", "type": "other", "translator": "xapi", "csrf": "guess"},
        cookies=session,
    )
    assert wrong.status_code == 403
    clients = auth_server.http.get(
        "/admin/api/clients", headers={"Authorization": f"Bearer {auth_server.admin_token()}"}
    )
    assert "evil" not in {c["name"] for c in clients.json()["clients"]}


def test_grant_warnings_are_shown_when_creating_and_editing(auth_server: AuthServer, page) -> None:
    admin_id, admin_secret = auth_server.create(name="Ops admin", type="other", scopes=["admin"])
    page.goto(f"{auth_server.url}/admin/")
    page.fill("input[name=client_id]", admin_id)
    page.fill("input[name=client_secret]", admin_secret)
    page.click("button[type=submit]")

    form = page.locator("#create-client")
    form.locator("input[name=name]").fill("Video tutor")
    form.locator("select[name=type]").select_option("adaptive")
    form.locator("select[name=translator]").select_option("xapi")
    form.locator("textarea[name=grant]").fill('[{"event_types": ["edx.video.*", "problem_check"]}]')
    form.locator("button[type=submit]").click()
    assert "shown only once" in page.inner_text("main"), "created: a warning is never a refusal"
    warned = page.inner_text(".warnings")
    assert "grant[0].event_types" in warned and "play_video" in warned
    client_id = page.inner_text("#client-id")

    page.goto(f"{auth_server.url}/admin/clients/{client_id}")
    page.locator("#edit-client textarea[name=grant]").fill('[{"event_types": ["edx.problem_check"]}]')
    page.locator("#edit-client button[type=submit]").click()
    assert "did you mean problem_check" in page.inner_text(".warnings")
    assert "edx.problem_check" in page.locator("#edit-client textarea[name=grant]").input_value(), "saved"

    page.locator("#edit-client textarea[name=grant]").fill('[{"event_types": ["problem_check"]}]')
    page.locator("#edit-client button[type=submit]").click()
    assert "Saved." in page.inner_text(".notice")
    assert page.locator(".warnings").count() == 0
