"""The self-service cards in a data scientist's words: only what they can use, and why
something is unavailable right now without what an administrator would have to do."""

import html

import pytest
from django.urls import reverse

from pools import cgroups, isolation
from profiles.choices import HealthStatus, InfrastructureKind
from profiles.models import Infrastructure

SELF_SERVICE = reverse("workspaces:self_service")
ADMIN_REASON = "Unreachable: the workspaces directory /srv/ws is not writable"


def page_for(client, user) -> str:
    client.force_login(user)
    return html.unescape(client.get(SELF_SERVICE).content.decode())


@pytest.fixture
def not_set_up(aws_infrastructure, profile_factory):
    """A published profile on an AWS entry without credentials."""
    return profile_factory(aws_infrastructure, "Cloud A100", (("A100-40GB", 8),), published=True)


@pytest.fixture
def gpu_profile(local_infrastructure, profile_factory):
    return profile_factory(local_infrastructure, "One A100", (("A100-40GB", 1),), published=True)


def test_a_card_says_gpu_memory_and_wait(client, member, gpu_profile):
    page = page_for(client, member)
    assert '<dd class="gpu">1× A100-40GB</dd>' in page
    assert '<dd class="memory">4 GB RAM</dd>' in page
    assert '<dd class="estimate">ready in seconds</dd>' in page


def cards_of(page: str, *slugs: str) -> dict[str, str]:
    return {
        slug: page[page.index(f'data-profile="{slug}"') :].split("</article>")[0] for slug in slugs
    }


def test_a_local_card_says_its_memory_and_cpus_are_not_limits_where_the_host_cannot_hold_them(
    client, org_admin, gpu_profile, not_set_up, settings
):
    """Pods on a cluster get them as limits; without cgroups the local driver only counts
    them."""
    settings.LOCAL_WORKSPACE_LIMITS = "off"
    page = page_for(client, org_admin)  # an admin is shown the cloud profile too
    cards = cards_of(page, "one-a100", "cloud-a100")
    assert '<dd class="limits">None: memory and CPUs count against quotas' in cards["one-a100"]
    assert 'class="limits"' not in cards["cloud-a100"]


def test_a_local_card_shows_no_caveat_where_the_host_holds_workspaces_to_their_profile(
    client, member, gpu_profile
):
    assert cgroups.support().enforced, cgroups.support().description
    card = cards_of(page_for(client, member), "one-a100")["one-a100"]
    assert 'class="limits"' not in card


def test_a_local_card_says_what_of_the_internet_its_workspaces_reach(
    client, org_admin, gpu_profile, not_set_up, settings
):
    assert isolation.host_capability().own_network, isolation.host_capability().description
    cards = cards_of(page_for(client, org_admin), "one-a100", "cloud-a100")
    assert '<dd class="internet">HTTPS only, through a proxy' in cards["one-a100"]
    assert 'class="internet"' not in cards["cloud-a100"]  # a cloud's network is its own
    settings.LOCAL_WORKSPACE_EGRESS = "off"
    card = cards_of(page_for(client, org_admin), "one-a100")["one-a100"]
    assert '<dd class="internet">None: downloads such as pip install fail</dd>' in card
    settings.LOCAL_WORKSPACE_NETWORK = "host"  # the host's network: nothing to say
    card = cards_of(page_for(client, org_admin), "one-a100")["one-a100"]
    assert 'class="internet"' not in card


@pytest.mark.parametrize(
    ("egress", "line"),
    [
        ("https", "HTTPS only (port 443 of public addresses)"),
        ("public", "Public addresses, any port"),
        ("off", "None: downloads such as pip install fail"),
    ],
)
def test_a_kubernetes_card_says_what_its_network_policy_lets_out(
    client, org_admin, profile_factory, settings, egress, line
):
    cluster = Infrastructure.objects.create(
        name="Cluster", kind=InfrastructureKind.KUBERNETES, health_status=HealthStatus.READY
    )
    profile_factory(cluster, "Pod A100", (("A100-40GB", 1),), published=True)
    settings.KUBERNETES_WORKSPACE_EGRESS = egress
    card = cards_of(page_for(client, org_admin), "pod-a100")["pod-a100"]
    # The portal cannot see whether the cluster's network plugin enforces the policy.
    expected = f'<dd class="internet">{line}, if the cluster enforces its network policy</dd>'
    assert expected in card
    settings.KUBERNETES_NAMESPACE_MODE = "shared"  # fenced by its label there
    card = cards_of(page_for(client, org_admin), "pod-a100")["pod-a100"]
    assert expected in card


def test_a_profile_whose_infrastructure_is_not_set_up_is_not_offered_to_scientists(
    client, member, not_set_up, gpu_profile
):
    page = page_for(client, member)
    assert 'data-profile="cloud-a100"' not in page
    assert "No credentials" not in page
    assert 'data-profile="one-a100"' in page


def test_administrators_still_see_it_with_what_is_missing(client, org_admin, not_set_up):
    page = page_for(client, org_admin)
    assert 'data-profile="cloud-a100"' in page
    assert "Not offered to data scientists until its infrastructure is set up." in page
    assert "For administrators: No credentials: add them" in page
    assert "Request workspace" not in page


def test_an_unreachable_infrastructure_is_unavailable_right_now_with_whom_to_ask(
    client, member, org_admin, gpu_profile, local_infrastructure
):
    local_infrastructure.health_status = HealthStatus.UNREACHABLE
    local_infrastructure.health_reason = ADMIN_REASON
    local_infrastructure.save()
    page = page_for(client, member)
    assert 'data-profile="one-a100"' in page
    assert (
        f"Unavailable right now; ask your platform team ({org_admin.email}) when it will be back."
        in page
    )
    assert "/srv/ws" not in page
    assert "Request workspace" not in page
    assert ADMIN_REASON in page_for(client, org_admin)  # for administrators only


def test_one_not_checked_yet_says_when_to_look_again(
    client, member, gpu_profile, local_infrastructure
):
    local_infrastructure.health_status = HealthStatus.UNCHECKED
    local_infrastructure.save()
    assert "the portal is checking it; look again in a minute." in page_for(client, member)


def test_a_heterogeneous_profile_lists_each_gpu_model(
    client, member, local_infrastructure, profile_factory
):
    groups = (("A100-40GB", 8), ("H100-80GB", 64))
    profile_factory(local_infrastructure, "Mixed", groups, published=True)
    page = page_for(client, member)
    assert '<dd class="gpu">8× A100-40GB + 64× H100-80GB</dd>' in page
    assert '<dd class="memory">8 GB RAM</dd>' in page  # two groups of the default 4 GB
