"""Can a services profile run on a compute profile? (ports, GPUs, storage, the driver)

Used by the compute profile form (when an admin picks a default services profile) and by
the compatibility section of the services profile page. Errors stop a choice; notes say
what will be skipped (components not available on the infrastructure) without stopping it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from profiles.choices import InfrastructureKind
from profiles.models import ComputeProfile
from services import components as catalog


@dataclass
class Compatibility:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # names of the components that run there
    skipped: list[str] = field(default_factory=list)  # and of those that cannot

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def summary(self) -> str:
        """Per component: "All 3 components run", "1 of 5 components runs: MLflow"."""
        total = len(self.runs) + len(self.skipped)
        if not self.runs:
            return f"None of {total} components runs" if total else "No components"
        if not self.skipped:
            return "The one component runs" if total == 1 else f"All {total} components run"
        verb = "runs" if len(self.runs) == 1 else "run"
        return f"{len(self.runs)} of {total} components {verb}: {', '.join(self.runs)}"


def check(services_profile, infrastructure, groups: list[dict]) -> Compatibility:
    """`groups` are resource groups as dicts (gpu_count, mig_profile, storage_gb, node_count)."""
    result = Compatibility()
    local = infrastructure is not None and infrastructure.kind == InfrastructureKind.LOCAL
    gpus = sum(int(g.get("gpu_count") or 0) * int(g.get("node_count") or 1) for g in groups)
    storage = sum(int(g.get("storage_gb") or 0) * int(g.get("node_count") or 1) for g in groups)
    runnable, gpu_need, storage_need, ports = [], 0, 0, {}
    for item in services_profile.components.all():
        found = catalog.component(item.component)
        if found is None:
            result.errors.append(f"Unknown component “{item.component}”.")
            continue
        try:
            params = found.resolve(item.parameters)
        except ValueError as error:
            result.errors.append(str(error))
            continue
        if local:
            available, why = found.local_availability()
            if not available:
                result.notes.append(why)
                result.skipped.append(found.name)
                continue
        runnable.append(found)
        result.runs.append(found.name)
        need = max(int(params.get("gpus", 0)), found.min_gpus)
        # Local processes share the workspace's GPUs; Kubernetes pods each request theirs.
        gpu_need = max(gpu_need, need) if local else gpu_need + need
        if not local:
            storage_need += int(params.get("storage_gb", 0))
        port = int(params.get("port", 0) or 0)
        if port:
            if port in ports:
                result.errors.append(f"{found.name} and {ports[port]} both use port {port}.")
            ports[port] = found.name
    if gpu_need > gpus:
        result.errors.append(
            f"“{services_profile}” needs {gpu_need} GPU(s); the compute profile has {gpus}."
        )
    if storage_need > storage:
        result.errors.append(
            f"“{services_profile}” needs {storage_need} GB of storage; "
            f"the compute profile has {storage} GB."
        )
    if not runnable and not result.errors:
        result.errors.append(
            f"Nothing of “{services_profile}” runs on {infrastructure}: " + " ".join(result.notes)
        )
    return result


def check_profile(services_profile, compute_profile) -> Compatibility:
    groups = [g.as_dict() for g in compute_profile.resource_groups.all()]
    return check(services_profile, compute_profile.infrastructure, groups)


def compatibility_rows(services_profile) -> list[tuple]:
    """(compute profile, Compatibility) for each published compute profile or one using it."""
    from django.db.models import Q

    profiles = (
        ComputeProfile.objects.filter(
            Q(published=True) | Q(default_services_profile=services_profile)
        )
        .select_related("infrastructure")
        .prefetch_related("resource_groups")
    )
    return [(profile, check_profile(services_profile, profile)) for profile in profiles]
