"""Demo data: enough for the whole flow on any machine, loaded idempotently.

- the local infrastructure (this machine) with a CPU-only "Starter" profile, and a local GPU
  profile when NVML finds GPUs here;
- an AWS entry (no credentials, so the UI says it is not usable) carrying the
  Small/Medium/Large warm-pool profiles (desired 9/2/1) and a heterogeneous one;
- the turnkey services profiles (shipped by a migration; re-created if missing);
- a platform-team admin and a data scientist.
"""

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db import transaction

from pools import health
from portal.models import Team
from portal.roles import Role
from profiles import catalog
from profiles.choices import AllocationStrategy, InfrastructureKind
from profiles.models import (
    ComputeProfile,
    Infrastructure,
    InstanceType,
    ServiceComponent,
    ServicesProfile,
    local_gpu_offer,
)
from profiles.turnkey import ensure_turnkey

DEMO_ADMIN = ("admin", "gpu-paas-admin")
DEMO_SCIENTIST = ("scientist", "gpu-paas-scientist")

AWS_INSTANCE_TYPES = ["m6i.xlarge", "g5.xlarge", "g5.12xlarge", "p4d.24xlarge", "p5.48xlarge"]

WARM = AllocationStrategy.WARM_POOL
ON_DEMAND = AllocationStrategy.ON_DEMAND

# name, description, strategy, desired, super-sized, resource groups
# (gpu model, gpu count, cpu, ram GB, storage GB, nodes)
AWS_PROFILES = [
    (
        "Small",
        "One A10G for notebooks and small experiments.",
        WARM,
        9,
        False,
        [("A10G", 1, 4, 16, 100, 1)],
    ),
    (
        "Medium",
        "8× A100 on one node for multi-GPU training.",
        WARM,
        2,
        False,
        [("A100-40GB", 8, 208, 1152, 800, 1)],
    ),
    (
        "Large",
        "8× H100 for large training runs.",
        WARM,
        1,
        False,
        [("H100-80GB", 8, 192, 2048, 2048, 1)],
    ),
    (
        "Medium (heterogeneous)",
        "8× A100 plus 64× H100 across nine nodes, for the largest jobs.",
        ON_DEMAND,
        0,
        True,
        [("A100-40GB", 8, 208, 1152, 800, 1), ("H100-80GB", 8, 124, 2048, 1024, 8)],
    ),
]


@transaction.atomic
def load_demo() -> dict:
    ensure_turnkey(ServicesProfile, ServiceComponent)
    local = _local_infrastructure()
    aws = _aws_infrastructure()
    _profile(
        local,
        "Starter",
        "CPU-only workspace that works on any machine.",
        ON_DEMAND,
        0,
        False,
        [("", 0, 2, 4, 10, 1)],
    )
    offer = local_gpu_offer()
    for model in offer:
        _profile(
            local,
            f"Local {model}",
            f"One {model} GPU of this machine.",
            ON_DEMAND,
            0,
            False,
            [(model, 1, 4, 16, 50, 1)],
        )
    for name, description, strategy, desired, super_sized, groups in AWS_PROFILES:
        _profile(aws, name, description, strategy, desired, super_sized, groups)
    admin = _user(*DEMO_ADMIN, email="admin@example.com")
    scientist = _user(*DEMO_SCIENTIST, email="scientist@example.com")
    _team("Platform team", Role.ORG_ADMIN, "Administrators of the GPU platform.", admin)
    _team("Data scientists", Role.MEMBER, "Self-service access to GPU workspaces.", scientist)
    # Checked now, as a save would have them checked, so the demo is usable at once.
    for infrastructure in (local, aws):
        health.check_infrastructure(infrastructure.pk)
    return {"local_gpus": offer}


def _local_infrastructure() -> Infrastructure:
    infrastructure, _ = Infrastructure.objects.get_or_create(
        kind=InfrastructureKind.LOCAL,
        defaults={"name": "This machine", "description": "The portal's own host."},
    )
    return infrastructure


def _aws_infrastructure() -> Infrastructure:

    infrastructure, _ = Infrastructure.objects.get_or_create(
        name="AWS us-east-1",
        defaults={
            "kind": InfrastructureKind.PUBLIC_CLOUD,
            "provider": "aws",
            "region": "us-east-1",
            "kubernetes_version": "1.33",
            "description": "Add credentials (an IAM role) to provision EKS capacity here.",
        },
    )
    for name in AWS_INSTANCE_TYPES:
        facts = catalog.instance_type("aws", name)
        InstanceType.objects.get_or_create(
            infrastructure=infrastructure,
            name=name,
            defaults={
                "gpu_model": facts.gpu_model or "",
                "gpu_count": facts.gpu_count,
                "gpu_memory_gb": facts.gpu_memory_gb,
                "vcpu": facts.vcpu,
                "ram_gb": facts.ram_gb,
            },
        )
    return infrastructure


def _profile(infrastructure, name, description, strategy, desired, super_sized, groups):
    profile, created = ComputeProfile.objects.get_or_create(
        name=name,
        defaults={
            "infrastructure": infrastructure,
            "description": description,
            "published": True,
            "allocation_strategy": strategy,
            "desired_capacity": desired,
            "super_sized": super_sized,
        },
    )
    if created:
        for position, (model, count, cpu, ram, storage, nodes) in enumerate(groups):
            profile.resource_groups.create(
                position=position,
                gpu_model=model,
                gpu_count=count,
                cpu=cpu,
                ram_gb=ram,
                storage_gb=storage,
                node_count=nodes,
            )
    return profile


def _user(username: str, password: str, email: str):
    # Names and addresses are unique ignoring case (portal 0009, 0010): an "Admin" already
    # there is this one, and an address another account holds stays that account's alone.
    users = get_user_model().objects
    if users.filter(email__iexact=email).exclude(username__iexact=username).exists():
        email = ""
    user, created = users.get_or_create(
        username__iexact=username, defaults={"username": username, "email": email}
    )
    if created:
        user.set_password(password)
        user.save()
    if user.email:
        # A verified address: allauth then links an Okta login with the same email to this
        # account instead of treating the local account as unclaimed.
        EmailAddress.objects.get_or_create(
            user=user, email=user.email, defaults={"verified": True, "primary": True}
        )
    return user


def _team(name: str, role: str, description: str, member) -> Team:
    team, _ = Team.objects.get_or_create(
        name=name, defaults={"role": role, "description": description}
    )
    team.members.add(member)
    return team
