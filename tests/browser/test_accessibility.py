"""Each role walks the portal in headless Chromium; axe-core checks every page it visits.

A walk starts at the home page and follows the portal's own links, breadth first, visiting
each kind of page once (paths of one URL pattern count as one, whatever their ids), and
adds the main flows: the data scientist requests a workspace, opens it, stops it; the
admin submits a form with a mistake. Every page visited must have no serious or critical
axe-core violation, and each leaves a screenshot under var/screenshots/<role>/ (a CI
artefact, never committed).
"""

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import Resolver404, resolve
from playwright.sync_api import expect

from pools.lifecycle import State
from pools.models import Workspace
from portal.roles import Role
from profiles.models import ComputeProfile
from tests.browser.conftest import log_in
from tests.conftest import PASSWORD
from tests.workspace_fixtures import workspaces_root  # noqa: F401
from workspaces.demo import DEMO_ADMIN, DEMO_SCIENTIST, load_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
BLOCKING = {"serious", "critical"}
# Not pages of the portal's own (Django's admin, the API's machine-readable answers), not
# GET requests with effects (logging out), or not HTML (CSV downloads).
SKIPPED = re.compile(r"^/(admin/django|django-admin|api/|metrics|accounts/logout)|\.csv\b")
MAX_PAGES = 60  # a bound on the walk, far above the kinds of page the portal has

axe = Axe()


def page_kind(path: str) -> str:
    """The URL pattern a path matches: pages that differ only in ids are one kind."""
    try:
        return resolve(path).route
    except Resolver404:
        return path


class Walk:
    """One role's walk: checks and photographs every page it is shown."""

    def __init__(self, page, role: str):
        self.page = page
        page.set_viewport_size({"width": 1366, "height": 900})  # the laptop screen
        self.role = role
        self.seen: set[str] = set()
        self.problems: list[str] = []
        shutil.rmtree(SCREENSHOTS / role, ignore_errors=True)  # no stale pictures
        (SCREENSHOTS / role).mkdir(parents=True)

    def check(self, name: str) -> None:
        """Run axe-core on the page as it is now and save its screenshot as `name`."""
        self.page.wait_for_load_state("load")
        results = axe.run(self.page)
        for violation in results.response["violations"]:
            if violation["impact"] in BLOCKING:
                targets = [", ".join(node["target"]) for node in violation["nodes"][:3]]
                self.problems.append(
                    f"{self.role} {self.page.url}: {violation['id']} ({violation['impact']}) "
                    f"{violation['help']} at {targets}"
                )
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "home"
        self.page.screenshot(path=str(SCREENSHOTS / self.role / f"{slug}.png"))

    def visit(self, path: str) -> None:
        self.seen.add(page_kind(urlsplit(path).path))
        self.page.goto(path)
        self.check(path)

    def crawl(self, start: str = "/") -> None:
        """Follow the portal's links from `start`, each kind of page once."""
        queue = [start]
        while queue and len(self.seen) < MAX_PAGES:
            path = queue.pop(0)
            if page_kind(urlsplit(path).path) in self.seen:
                continue
            self.visit(path)
            for href in self.links():
                if page_kind(urlsplit(href).path) not in self.seen:
                    queue.append(href)

    def links(self) -> list[str]:
        hrefs = self.page.eval_on_selector_all(
            "a[href]:not([download])", "anchors => anchors.map(a => a.getAttribute('href'))"
        )
        return [
            href
            for href in hrefs
            if href.startswith("/") and not href.startswith("//") and not SKIPPED.search(href)
        ]


@pytest.fixture
def demo(live_server, workspaces_root):  # noqa: F811
    """The demo data, plus a ready workspace of the scientist's so its page has content."""
    load_demo()
    starter = ComputeProfile.objects.get(slug="starter")
    Workspace.objects.create(
        owner=get_user_model().objects.get(username=DEMO_SCIENTIST[0]),
        profile=starter,
        infrastructure=starter.infrastructure,
        state=State.READY,
        name="analysis",
        connection={"shell": "cd /tmp"},
    )


def test_the_data_scientist_walks_the_portal_without_serious_accessibility_problems(demo, page):
    walk = Walk(page, "scientist")
    log_in(page, *DEMO_SCIENTIST)
    walk.check("home")
    page.goto("/workspaces/")
    card = page.locator('article[data-profile="starter"]')
    card.get_by_label("Workspace name").fill("experiment")
    card.get_by_role("button", name="Request workspace").click()
    expect(page.locator(".flash-success")).to_contain_text("experiment")
    walk.check("self-service after a request")
    page.get_by_role("link", name="analysis").click()
    walk.check("workspace detail")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".flash-success")).to_contain_text("Stopping workspace “analysis”")
    walk.check("workspace detail after stop")  # the action kept the user on the page
    walk.crawl("/workspaces/")
    assert not walk.problems, "\n".join(walk.problems)


@pytest.mark.parametrize(
    "role", [Role.ORG_ADMIN, Role.OPERATOR, Role.VIEWER], ids=lambda role: role.value
)
def test_each_admin_role_walks_the_portal_without_serious_accessibility_problems(
    demo, page, user_factory, role
):
    if role == Role.ORG_ADMIN:
        log_in(page, *DEMO_ADMIN)
    else:
        user_factory(role.value, role)
        log_in(page, role.value, PASSWORD)
    walk = Walk(page, role.value)
    if role == Role.ORG_ADMIN:
        page.goto("/admin/infrastructure/add/")
        page.get_by_role("button", name=re.compile("Create")).click()
        walk.check("infrastructure form with errors")
    walk.crawl("/")
    assert not walk.problems, "\n".join(walk.problems)
