"""Warm pool end to end: a real django-q2 worker, the local driver and headless Chromium."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811

import pytest
from django_q.tasks import async_task
from playwright.sync_api import expect

from pools.lifecycle import State
from pools.models import PoolInstance, Workspace
from profiles.choices import AllocationStrategy
from profiles.models import ComputeProfile, Infrastructure
from tests.browser.conftest import log_in
from tests.workspace_fixtures import (  # noqa: F401
    live_server_on_shared_database,
    qcluster,
    shared_database,
    wait_for,
    workspaces_root,
)
from workspaces.demo import DEMO_SCIENTIST, load_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def ready_instances(profile) -> int:
    return PoolInstance.objects.filter(profile=profile, state=State.READY).count()


def test_a_user_claims_a_warm_instance_and_the_pool_is_refilled(
    qcluster, live_server_on_shared_database, page, workspaces_root
):
    load_demo()
    profile = ComputeProfile.objects.create(
        name="Warm notebook",
        infrastructure=Infrastructure.objects.get(kind="local"),
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=2,
    )
    profile.resource_groups.create(position=0, gpu_model="", gpu_count=0, cpu=2, ram_gb=4)

    # The loop runs in the worker (as the schedule would run it) and provisions two.
    async_task("pools.warmpool.run_loop")
    wait_for(lambda: ready_instances(profile) == 2, 60, what="two ready instances")
    first_two = set(PoolInstance.objects.filter(profile=profile).values_list("pk", flat=True))

    log_in(page, *DEMO_SCIENTIST)
    page.goto("/workspaces/")
    card = page.locator(f'article[data-profile="{profile.slug}"]')
    expect(card).to_contain_text("ready now (warm)")
    card.locator("input[name=name]").fill("hot-notebook")
    card.get_by_role("button", name="Request workspace").click()
    expect(page.locator(".flash-success")).to_contain_text("ready now from the warm pool (pool-")

    # Ready immediately: the page right after the request already shows it ready.
    item = page.locator("#my-workspaces article[data-workspace]")
    expect(item).to_have_attribute("data-state", "ready", timeout=1_000)
    workspace = Workspace.objects.get(owner__username=DEMO_SCIENTIST[0])
    instance = workspace.pool_instance
    assert instance.pk in first_two and instance.state == State.CLAIMED
    expect(item).to_contain_text(f"claimed warm instance {instance.resource_name}")
    expect(item.locator(".workspace-shell")).to_contain_text(
        f"cd {workspaces_root / instance.resource_name} && "
    )
    page.goto("about:blank")  # stop polling

    # The claim triggered the loop on commit: the pool is back to two ready instances.
    wait_for(lambda: ready_instances(profile) == 2, 60, what="the pool refilled to two")
    assert PoolInstance.objects.filter(profile=profile).count() == 3
    assert (workspaces_root / instance.resource_name / "workspace.env").exists()
