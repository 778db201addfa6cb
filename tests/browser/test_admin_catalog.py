import pytest
from playwright.sync_api import expect

from profiles.models import ComputeProfile, Infrastructure
from tests.browser.conftest import log_in
from workspaces.demo import DEMO_ADMIN, load_demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_creates_infrastructure_and_a_heterogeneous_profile(page):
    load_demo()
    log_in(page, *DEMO_ADMIN)

    page.goto("/admin/infrastructure/add/")
    page.fill("input[name=name]", "Azure West Europe")
    page.select_option("select[name=kind]", "public_cloud")
    page.select_option("select[name=provider]", "azure")
    # Only the chosen provider's regions and instance types are offered.
    expect(page.locator("select[name=region] optgroup[label='Amazon Web Services']")).to_be_hidden()
    page.select_option("select[name=region]", "westeurope")
    page.select_option("select[name=kubernetes_version]", "1.34")
    page.select_option(
        "select[name=instance_types]", ["Standard_ND96asr_v4", "Standard_ND96isr_H100_v5"]
    )
    page.click("button:has-text('Create infrastructure')")
    expect(page.locator("h1")).to_have_text("Azure West Europe")
    expect(page.locator(".flash-warning")).to_contain_text("No credentials")

    page.goto("/admin/compute-profiles/add/")
    page.fill("input[name=name]", "Mixed training")
    page.select_option("select[name=infrastructure]", label="Azure West Europe")
    page.check("input[name=published]")
    page.select_option("select[name='groups-0-gpu_model']", "A100-40GB")
    page.fill("input[name='groups-0-gpu_count']", "8")
    page.click("button:has-text('Add another resource group')")
    page.select_option("select[name='groups-1-gpu_model']", "H100-80GB")
    page.fill("input[name='groups-1-gpu_count']", "8")  # per node: 16 H100 on 2 nodes
    page.fill("input[name='groups-1-node_count']", "2")
    page.click("button:has-text('Create compute profile')")
    expect(page.locator("h1")).to_have_text("Mixed training")
    expect(page.locator("h2")).to_contain_text(["heterogeneous"])

    page.goto("/admin/infrastructure/")
    expect(page.locator("table")).to_contain_text("Azure West Europe")
    page.goto("/admin/compute-profiles/")
    expect(page.locator("table")).to_contain_text("Mixed training")
    assert Infrastructure.objects.get(name="Azure West Europe").region == "westeurope"
    assert ComputeProfile.objects.get(name="Mixed training").is_heterogeneous
