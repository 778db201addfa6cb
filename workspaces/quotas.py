"""Group quotas for workspaces.

The rule (union semantics):
1. The candidate groups are the user's groups whose role grants self-service *and* that
   grant the profile: the groups listing it, or, for a profile no group lists (open to
   everyone), all such groups of the user.
2. A group's quotas cap the *group's total*: the live workspaces charged to it (requested,
   provisioning, ready, deleting; stopping, stopped, starting) together may hold at most
   `max_workspaces` workspaces, `max_gpus` whole GPUs and `max_mig_slices` MIG slices.
   Blank means unlimited. A workspace holds what its profile holds, every node counted
   (`ComputeProfile.totals`), plus, on Kubernetes, the GPUs its services stack's
   components hold of their own (`ServiceDeployment.own_gpus`). A stopped workspace holds
   no GPU, so it counts as a workspace but not against the GPU and MIG-slice quotas.
3. A request is allowed if ANY candidate group has room for it; the workspace is charged to
   the first such group by name, and gets that group's `max_lifetime_hours`. Starting a
   stopped workspace chooses again, the same way, for what its profile holds now (its
   current group first, so it stays there while that has room).
4. A user outside every group (a superuser) is not limited. A user in some group with no
   candidate group is refused (`usable_by` counts the same grants, so only a superuser
   whose groups are all Viewer groups gets there), never left unlimited.

Callers lock the candidate groups (`lock_groups`) in the transaction that creates the
workspace, so two requests can never both use the last unit of a quota.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce

from pools.lifecycle import GPU_STATES, LIVE_STATES
from portal.models import Team
from portal.text import plural
from profiles.models import SELF_SERVICE_ROLES
from services import tasks as service_tasks
from services.models import ComponentStatus, ServiceDeployment

LIMITS = [
    ("workspaces", "max_workspaces", "concurrent workspace"),
    ("gpus", "max_gpus", "concurrent GPU"),
    ("mig_slices", "max_mig_slices", "concurrent MIG slice"),
]


@dataclass
class Usage:
    team: Team
    used: dict[str, int]

    def rows(self) -> list[tuple[str, int, int | None]]:
        """(label in the singular, used, limit or None) for display."""
        return [(label, self.used[key], getattr(self.team, attr)) for key, attr, label in LIMITS]

    def blocking(self, need: dict[str, int], what: str = "this profile") -> list[str]:
        """Why `need` (of `what`) does not fit, one sentence per exhausted quota (empty
        when it fits)."""
        reasons = []
        for key, attr, label in LIMITS:
            limit = getattr(self.team, attr)
            if limit is not None and need[key] and self.used[key] + need[key] > limit:
                allows = plural(limit, label)
                reasons.append(
                    f"group “{self.team}” allows {allows} and has {self.used[key]} in use; "
                    f"{what} needs {need[key]}"
                )
        return reasons


def candidate_groups(user, profile):
    """Rule 1, as one query: the groups listing the profile, or all if none lists it."""
    listed = profile.teams.all()
    grants = Q(pk__in=listed.values("pk")) | ~Exists(listed)
    groups = Team.objects.filter(grants, members=user, role__in=SELF_SERVICE_ROLES)
    return groups.order_by("name", "pk")


def lock_groups(user, profile) -> list[Team]:
    """The candidate groups, row-locked until the end of the transaction (PostgreSQL).

    On SQLite `select_for_update` is a no-op; there the portal's transactions are IMMEDIATE
    (settings), which serialises writers just the same.
    """
    candidates = candidate_groups(user, profile).values("pk")
    return list(Team.objects.select_for_update().filter(pk__in=candidates).order_by("name", "pk"))


def _with_use(teams):
    """`teams` (a queryset), each annotated with what its live workspaces use."""
    live = Q(workspaces__state__in=LIVE_STATES)
    holding = Q(workspaces__state__in=GPU_STATES)
    # The GPUs live stacks hold of their own (`ServiceDeployment.own_gpus`), in a subquery:
    # joined, they would multiply the workspaces' sums.
    stacks = (
        ServiceDeployment.objects.filter(
            workspace__team=OuterRef("pk"),
            workspace__state__in=GPU_STATES,
            state__in=LIVE_STATES,
        )
        .order_by()
        .values("workspace__team")
        .annotate(total=Sum("own_gpus"))
        .values("total")
    )
    return teams.annotate(
        used_workspaces=Count("workspaces", filter=live),
        used_gpus=Sum("workspaces__gpus", filter=holding, default=0),
        used_mig_slices=Sum("workspaces__mig_slices", filter=holding, default=0),
        used_stack_gpus=Coalesce(Subquery(stacks), 0),
    )


def _used(annotated: Team) -> dict[str, int]:
    return {
        "workspaces": annotated.used_workspaces,
        "gpus": annotated.used_gpus + annotated.used_stack_gpus,
        "mig_slices": annotated.used_mig_slices,
    }


def usage(teams, starting=None) -> list[Usage]:
    """The use of `teams` (e.g. the ones `lock_groups` locked), in their order.

    `starting`: a stopped workspace about to start, left out of its group's count so it
    can be charged afresh (stopped, it holds no GPU, but counts as a workspace)."""
    teams = list(teams)
    counted = {t.pk: t for t in _with_use(Team.objects.filter(pk__in=[t.pk for t in teams]))}
    found = [Usage(team=team, used=_used(counted[team.pk])) for team in teams]
    if starting is not None:
        for item in found:
            if item.team.pk == starting.team_id:
                item.used["workspaces"] -= 1
    return found


def usage_of(user) -> list[Usage]:
    """The use of each of the user's self-service groups, by name, in one query."""
    teams = _with_use(user.teams.filter(role__in=SELF_SERVICE_ROLES).order_by("name"))
    return [Usage(team=team, used=_used(team)) for team in teams]


def need_of(profile) -> dict[str, int]:
    """What one workspace of `profile` is charged, every node counted."""
    totals = profile.totals()
    return {"workspaces": 1, "gpus": totals["gpus"], "mig_slices": totals["mig_slices"]}


def choose_group(
    usages: list[Usage], need: dict[str, int], what: str = "this profile"
) -> tuple[Team | None, list[str]]:
    """The group to charge (rule 3), or None and every reason `need` (of `what`) does not
    fit."""
    reasons = []
    for item in usages:
        blocked = item.blocking(need, what)
        if not blocked:
            return item.team, []
        reasons += blocked
    return None, reasons


def stack_room(workspace, gpus: int, what: str) -> list[str]:
    """Why the workspace's group has no room for `gpus` more GPUs of its services stack
    (empty: it has). Locks the group's row until the end of the caller's transaction, like
    `lock_groups`, so two deploys never both take the last GPU of a quota."""
    if workspace.team_id is None or not gpus:
        return []
    team = Team.objects.select_for_update().get(pk=workspace.team_id)
    need = {"workspaces": 0, "gpus": gpus, "mig_slices": 0}
    return usage([team])[0].blocking(need, what)


# -- the GPUs of services stacks -------------------------------------------------------


def deployed_stack_gpus(stack: ServiceDeployment) -> int:
    """The GPUs a deployed stack (its components and infrastructure loaded) holds of its own,
    or takes again when its workspace starts: its components but those that cannot run
    there or were removed."""
    running = [
        row
        for row in stack.components.all()
        if row.status not in (ComponentStatus.UNAVAILABLE, ComponentStatus.REMOVED)
    ]
    return service_tasks.own_gpus(stack.infrastructure, stack.workspace_spec(), running)
