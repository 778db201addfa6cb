"""What the self-service page offers a user: the compute profiles they can use, each as a
card in a data scientist's words (GPU, memory, the expected wait).

A profile whose infrastructure is not set up (no driver provisions on its kind, or its
credentials or kubeconfig are missing) is withheld: the people it is offered to can do
nothing about it. Those who may change infrastructure still see it, with what is missing.
A profile whose infrastructure is set up but not ready now (its latest health check failed,
or none has run yet) is offered as "unavailable right now", with when to look again or whom
to ask, never with what an administrator would have to do. So is a profile asking for MIG
slices its infrastructure's partitioning no longer offers (an edit, or data from before
edits were checked): those who may change it read which slices are gone.
"""

from __future__ import annotations

from pools import cgroups, isolation
from pools.drivers import k8s_manifests
from pools.drivers.kubernetes import options_from_settings
from portal.roles import CHANGE, Area, has_perm
from portal.users import org_admins
from profiles import partitioning
from profiles.choices import HealthStatus, InfrastructureKind
from workspaces import estimates

UNAVAILABLE = "Unavailable right now"
NO_INTERNET = "None: downloads such as pip install fail"
CHECKING = f"{UNAVAILABLE}: the portal is checking it; look again in a minute."


def sees_setup_hints(user) -> bool:
    """What is missing from an infrastructure entry is for those who can add it."""
    return has_perm(user, Area.INFRASTRUCTURE, CHANGE)


def set_up(infrastructure) -> bool:
    """Whether the entry could provision at all (a driver for its kind, its own settings
    complete); its health aside."""
    return infrastructure.provisionable and infrastructure.usability()[0]


def contact() -> str:
    """Whom a data scientist asks: the platform team, by the address of an Org admin."""
    email = org_admins().exclude(email="").order_by("pk").values_list("email", flat=True).first()
    return f"ask your platform team ({email})" if email else "ask your platform team"


def unavailable_note(infrastructure, ask: str) -> str:
    """Why a set-up entry is not offered now, in a data scientist's words."""
    if infrastructure.health_status == HealthStatus.UNCHECKED or infrastructure.health_pending:
        return CHECKING
    return f"{UNAVAILABLE}; {ask} when it will be back."


def refusal(user, infrastructure, reason: str) -> str:
    """Why a request on `infrastructure` is refused now, as `user` may read it: the
    administrator's `reason` for those who may set it up, else plain words."""
    if sees_setup_hints(user):
        return reason
    if set_up(infrastructure):
        return unavailable_note(infrastructure, contact())
    return f"It is not offered yet; {contact()}."


def gpu_summary(groups) -> str:
    """ "1× A10G", "8× A100-40GB + 64× H100-80GB", "1× A100-40GB MIG 1g.5gb", "No GPU": what
    every node of each group holds together (the count is per node)."""
    parts = []
    for group in groups:
        if group.gpu_count:
            slice_ = f" MIG {group.mig_profile}" if group.mig_profile else ""
            count = group.gpu_count * group.node_count
            parts.append(f"{count}× {group.gpu_model or 'GPU'}{slice_}")
    return " + ".join(parts) or "No GPU"


def totals(profile) -> dict[str, str]:
    """Memory, CPUs and storage as the quota counts them (`ComputeProfile.totals`)."""
    counted = profile.totals()
    cpu = counted["cpu"]
    return {
        "memory": f"{counted['ram_gb']} GB RAM",
        "cpus": f"{cpu} CPU" if cpu == 1 else f"{cpu} CPUs",
        "storage": f"{counted['storage_gb']} GB",
    }


def offers(user, profiles) -> list:
    """The profiles (resource groups and infrastructure loaded) `user` is offered, each
    with `gpu`, `offered` (memory, CPUs, storage), `limited` (whether memory and CPUs are
    limits or only counted), `internet` (what its workspaces reach outside, where the
    portal fences them: `internet()`), `estimate`, `usable`, `note` (plain words) and
    `admin_hint`."""
    hints = sees_setup_hints(user)
    estimated = estimates.estimates(profiles)  # a few queries for all, not some per profile
    offered: dict[int, dict] = {}  # infrastructure → its slices, read once
    ask = None
    shown = []
    for profile in profiles:
        infrastructure = profile.infrastructure
        reason = why_unavailable(profile, offered)
        usable = not reason
        if not set_up(infrastructure) and not hints:
            continue
        profile.gpu = gpu_summary(profile.resource_groups.all())
        profile.offered = totals(profile)
        # Elsewhere a workspace gets its own memory and CPUs (pod limits on Kubernetes,
        # capacity of its own on a cloud); local ones are held to them where this host can.
        profile.limited = (
            infrastructure.kind != InfrastructureKind.LOCAL or cgroups.support().enforced
        )
        profile.internet = internet(infrastructure.kind)
        profile.estimate = estimated[profile.pk] if usable else ""
        profile.usable = usable
        profile.note = profile.admin_hint = ""
        if not usable:
            if set_up(infrastructure):
                ask = ask or contact()
                profile.note = unavailable_note(infrastructure, ask)
            else:
                profile.note = "Not offered to data scientists until its infrastructure is set up."
            profile.admin_hint = reason if hints else ""
        shown.append(profile)
    return shown


def why_unavailable(profile, offered: dict[int, dict]) -> str:
    """Why the profile cannot be had now, for an administrator ("" when it can): its
    infrastructure is not available, or its partitioning no longer offers its MIG slices.
    What the card shows "Unavailable right now" for, and a request is refused for."""
    usable, reason = profile.infrastructure.availability()
    return slices_gone(profile, offered) if usable else reason


def slices_gone(profile, offered: dict[int, dict]) -> str:
    """Why the profile's MIG slices cannot be had ("" when they can: the partitioning of its
    infrastructure offers them). `offered` caches each infrastructure's slices."""
    if not any(group.mig_profile for group in profile.resource_groups.all()):
        return ""
    infrastructure = profile.infrastructure
    if infrastructure.pk not in offered:
        offered[infrastructure.pk] = partitioning.offered_per_gpu(infrastructure)
    return partitioning.slices_gone(profile, offered[infrastructure.pk])


def internet(kind: str) -> str:
    """What a workspace on this kind of infrastructure reaches outside, in a scientist's
    words; "" where the portal does not fence it (a cloud's network is its own)."""
    if kind == InfrastructureKind.LOCAL:
        return local_internet()
    if kind == InfrastructureKind.KUBERNETES:
        return kubernetes_internet()
    return ""


def kubernetes_internet() -> str:
    """What its NetworkPolicy lets a Kubernetes workspace reach outside (in either
    namespace mode). The policy holds only where the cluster's network plugin enforces
    it, which the portal cannot see."""
    options = options_from_settings()
    reach = {
        k8s_manifests.HTTPS_EGRESS: "HTTPS only (port 443 of public addresses)",
        k8s_manifests.PUBLIC_EGRESS: "Public addresses, any port",
        k8s_manifests.NO_EGRESS: NO_INTERNET,
    }[options.egress]
    return f"{reach}, if the cluster enforces its network policy"


def local_internet() -> str:
    """What a local workspace reaches outside, in a scientist's words; "" where it shares
    the host's network (it then reaches what the host does)."""
    capability = isolation.host_capability()
    if not capability.own_network:
        return ""
    if capability.egress:
        return "HTTPS only, through a proxy (port 443 of public addresses)"
    return NO_INTERNET
