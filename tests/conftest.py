import pytest
from django.contrib.auth import get_user_model

from portal.models import SsoConfiguration, Team
from portal.roles import Role
from profiles.choices import HealthStatus, InfrastructureKind, PartitioningMode
from profiles.models import ComputeProfile, Infrastructure, InstanceType, PartitioningStrategy
from tests.pools.moto_server import aws, moto_endpoint  # noqa: F401  (shared fixtures)

PASSWORD = "correct-horse-battery"

# Numbers a test wants shown at the end of every run, e.g. how many requests the
# hostile-input test made (`pytest_terminal_summary` below prints them, even with -q).
RUN_SUMMARY: dict[str, int] = {}


def pytest_terminal_summary(terminalreporter):
    for what, number in RUN_SUMMARY.items():
        terminalreporter.write_line(f"{what}: {number}")


@pytest.fixture
def user_factory(db):
    """Make a user who belongs to a fresh group with the given role (or to none)."""

    def make(username: str, role: str | None = None, **fields):
        user = get_user_model().objects.create_user(
            username=username, password=PASSWORD, email=f"{username}@example.com", **fields
        )
        if role:
            team, _ = Team.objects.get_or_create(name=f"{role} group", defaults={"role": role})
            team.members.add(user)
        return user

    return make


@pytest.fixture
def org_admin(user_factory):
    return user_factory("olga", Role.ORG_ADMIN)


@pytest.fixture
def operator(user_factory):
    return user_factory("otto", Role.OPERATOR)


@pytest.fixture
def member(user_factory):
    return user_factory("mia", Role.MEMBER)


@pytest.fixture
def viewer(user_factory):
    return user_factory("vic", Role.VIEWER)


@pytest.fixture
def admin_client(client, org_admin):
    client.force_login(org_admin)
    return client


# Infrastructure fixtures are as the engine's health check (pools.health) left them: Ready.
# Tests of the check itself start from "not checked yet".
@pytest.fixture
def local_infrastructure(db):
    return Infrastructure.objects.create(
        name="This machine", kind=InfrastructureKind.LOCAL, health_status=HealthStatus.READY
    )


@pytest.fixture
def aws_infrastructure(db):
    infrastructure = Infrastructure.objects.create(
        name="AWS test",
        kind=InfrastructureKind.PUBLIC_CLOUD,
        provider="aws",
        region="us-east-1",
        kubernetes_version="1.33",
        health_status=HealthStatus.READY,
    )
    InstanceType.objects.create(
        infrastructure=infrastructure,
        name="p4d.24xlarge",
        gpu_model="A100-40GB",
        gpu_count=8,
        gpu_memory_gb=40,
        vcpu=96,
        ram_gb=1152,
    )
    InstanceType.objects.create(
        infrastructure=infrastructure,
        name="p5.48xlarge",
        gpu_model="H100-80GB",
        gpu_count=8,
        gpu_memory_gb=80,
        vcpu=192,
        ram_gb=2048,
    )
    return infrastructure


@pytest.fixture
def profile_factory(db):
    def make(infrastructure, name="Starter", groups=(("", 0),), **fields):
        profile = ComputeProfile.objects.create(name=name, infrastructure=infrastructure, **fields)
        for position, (model, count) in enumerate(groups):
            profile.resource_groups.create(position=position, gpu_model=model, gpu_count=count)
        return profile

    return make


@pytest.fixture
def partitioned(db):
    """Partition an infrastructure's A100-40GBs into MIG slices (mig-parted's all-balanced:
    1g.5gb, 2g.10gb and 3g.20gb), as the profile form requires of a profile asking for
    them: without it, the profile is unavailable (`workspaces.offers.slices_gone`)."""

    def make(infrastructure) -> PartitioningStrategy:
        return PartitioningStrategy.objects.create(
            infrastructure=infrastructure,
            gpu_model="A100-40GB",
            mode=PartitioningMode.NAMED,
            layout_name="all-balanced",
        )

    return make


def formset_data(prefix: str, rows: list[dict], initial: int = 0) -> dict:
    """POST data for an inline formset: the management form plus one dict per row."""
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows)),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        for key, value in row.items():
            data[f"{prefix}-{index}-{key}"] = value
    return data


def turn_password_login_off(break_glass: str) -> None:
    """Okta SSO on and local password login off, `break_glass` the only exception."""
    config = SsoConfiguration.load()
    config.enabled = True
    config.issuer = "https://okta.example.com/oauth2/default"
    config.client_id = "portal"
    config.client_secret = "secret"
    config.local_login_disabled = True
    config.break_glass_usernames = break_glass
    config.save()
