"""Workspace writes: each one changes the data, audits it and enqueues work on commit."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from pools import claims, lifecycle, lifetime, promises, tasks
from pools.lifecycle import State, transition
from pools.models import Workspace
from portal import audit
from portal.models import AuditAction
from portal.roles import CHANGE, USE, Area, has_perm
from portal.text import one_line
from profiles.models import ComputeProfile
from workspaces import offers, quotas


class RequestRefused(Exception):
    """A workspace request the user cannot make; the message says why, for the page."""


@transaction.atomic
def request_workspace(user, profile: ComputeProfile, name: str = "") -> Workspace:
    """Check access and quotas, create the workspace, audit it, then claim a warm instance
    (ready at once) or provision on commit."""
    if not ComputeProfile.objects.usable_by(user).filter(pk=profile.pk).exists():
        raise RequestRefused(f"You may not use the compute profile “{profile}”.")
    ok, why = profile.infrastructure.availability()
    if not ok:
        raise RequestRefused(f"“{profile}”: {offers.refusal(user, profile.infrastructure, why)}")

    groups = quotas.lock_groups(user, profile)
    need = quotas.need_of(profile)
    team = None
    if groups:
        team, reasons = quotas.choose_group(quotas.usage(groups), need)
        if team is None:
            raise RequestRefused("Quota reached: " + "; ".join(reasons) + ".")
    elif user.teams.exists():
        # Only a user outside every group (a superuser) goes unlimited. Anyone in a group
        # with none to charge (say a superuser in Viewer groups only) is refused, never
        # left without a quota or a lifetime.
        raise RequestRefused(
            f"None of your groups grants self-service use of “{profile}”; ask your administrator."
        )

    now = timezone.now()
    longest = lifetime.max_lifetime(team)
    charged = f", charged to group “{team}”" if team else ""
    workspace = lifecycle.create(
        Workspace,
        actor=user,
        message=f"requested{charged}",
        owner=user,
        profile=profile,
        infrastructure=profile.infrastructure,
        profile_version=profile.version,
        team=team,
        name=one_line(name)[:60].rstrip(),  # one line: it is in email subjects
        gpus=need["gpus"],
        mig_slices=need["mig_slices"],
        created=now,
        expires_at=now + longest if longest else None,
    )
    audit.record_created(user, workspace)
    # A warm-pool profile takes a ready instance in this same transaction, if there is one.
    if claims.adopt_warm_instance(workspace, user) is None:
        transaction.on_commit(lambda: tasks.enqueue_provision(workspace.pk))
    return workspace


def may_change(user, workspace: Workspace) -> bool:
    """The owner (with self-service) or a Workspaces administrator: delete, stop, start."""
    if workspace.owner_id == user.pk:
        return has_perm(user, Area.SELF_SERVICE, USE)
    return has_perm(user, Area.WORKSPACES, CHANGE)


may_delete = may_change


@transaction.atomic
def delete_workspace(user, workspace: Workspace) -> None:
    """Move the workspace to deleting and deprovision on commit."""
    if not may_delete(user, workspace):
        raise RequestRefused("You may not delete this workspace.")
    if workspace.state in (State.DELETING, State.DELETED):
        raise RequestRefused(f"This workspace is already {_state(workspace)}.")
    if not transition(workspace, State.DELETING, actor=user, message="deletion requested"):
        raise RequestRefused("The workspace changed at the same moment; try again.")
    promises.give_back(workspace, f"workspace {workspace.pk} was deleted while it waited")
    audit.record(user, AuditAction.ACTION, workspace, message="deleted workspace")
    transaction.on_commit(lambda: tasks.enqueue_deprovision(workspace.pk))


@transaction.atomic
def stop_workspace(user, workspace: Workspace) -> None:
    """Move a ready workspace to stopping and stop it on commit (GPUs released, files kept)."""
    if not may_change(user, workspace):
        raise RequestRefused("You may not stop this workspace.")
    if workspace.state not in (State.READY, State.DEGRADED):
        raise RequestRefused(
            f"Only a ready workspace can be stopped; this one is {_state(workspace)}."
        )
    if not tasks.request_stop(workspace, actor=user):
        raise RequestRefused("The workspace changed at the same moment; try again.")
    audit.record(user, AuditAction.ACTION, workspace, message="stopped workspace")


@transaction.atomic
def start_workspace(user, workspace: Workspace) -> None:
    """Check that its owner may still use its profile and the GPU quotas again, move the
    stopped workspace to starting, start on commit."""
    if not may_change(user, workspace):
        raise RequestRefused("You may not start this workspace.")
    if workspace.state != State.STOPPED:
        raise RequestRefused(
            f"Only a stopped workspace can be started; this one is {_state(workspace)}."
        )
    # Starting takes GPUs again, as a request would: not for a profile that was unpublished
    # or taken away from the owner's groups since.
    usable = ComputeProfile.objects.usable_by(workspace.owner).filter(pk=workspace.profile_id)
    if not usable.exists():
        who = "You" if workspace.owner_id == user.pk else "Its owner"
        raise RequestRefused(
            f"{who} may no longer use the compute profile “{workspace.profile}”, "
            "so this workspace cannot start again."
        )
    blocked = quotas.check_start(workspace)  # locks the group until this transaction ends
    if blocked:
        raise RequestRefused("Quota reached: " + "; ".join(blocked) + ".")
    if not transition(
        workspace,
        State.STARTING,
        actor=user,
        message="start requested",
        attempts=0,
        failure_reason="",
    ):
        raise RequestRefused("The workspace changed at the same moment; try again.")
    audit.record(user, AuditAction.ACTION, workspace, message="started workspace")
    transaction.on_commit(lambda: tasks.enqueue_start(workspace.pk))


def _state(workspace: Workspace) -> str:
    return workspace.get_state_display().lower()


def reveal_secret(user, workspace: Workspace) -> str:
    """The workspace's secret for its owner, exactly once (a conditional UPDATE)."""
    if workspace.owner_id != user.pk or not workspace.secret:
        return ""
    shown = Workspace.objects.filter(pk=workspace.pk, secret_shown=False).update(secret_shown=True)
    return workspace.secret if shown == 1 else ""
