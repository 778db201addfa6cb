"""The API docs page in a real browser: Swagger UI from the portal's own static files (no
request leaves the portal), under the portal's Content-Security-Policy, listing the
operations; and the API tokens page creating a token that the API then accepts."""

import pytest
import requests

from tests.browser.conftest import log_in
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_docs_page_renders_offline_under_the_csp(page, live_server, org_admin):
    elsewhere, problems = [], []
    page.on("request", lambda r: r.url.startswith(live_server.url) or elsewhere.append(r.url))
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    log_in(page, org_admin.username, PASSWORD)

    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock-tag", timeout=30_000)

    tags = page.locator(".swagger-ui .opblock-tag").all_inner_texts()
    assert any("workspaces" in tag for tag in tags)
    assert not [url for url in elsewhere if not url.startswith("data:")], elsewhere
    assert not problems, problems


def test_a_token_made_on_the_tokens_page_works_with_the_api(page, live_server, member):
    log_in(page, member.username, PASSWORD)
    page.goto("/api/tokens/")
    page.fill("input[name=name]", "notebook")
    page.click("form[action$='/api/tokens/add/'] button[type=submit]")
    token = page.locator("#token-value").inner_text()

    response = requests.get(
        f"{live_server.url}/api/v1/workspaces/",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )

    assert response.status_code == 200 and response.json()["count"] == 0
    page.goto("/api/tokens/")
    assert page.locator("#token-value").count() == 0  # shown once, never again
    assert token not in page.content()
