"""Workspace writes: each one changes the data, audits it and enqueues work on commit."""

from __future__ import annotations

from django.db import transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone

from pools import claims, lifecycle, lifetime, promises, tasks
from pools.lifecycle import State, transition
from pools.models import Workspace
from portal import audit
from portal.models import AuditAction
from portal.roles import CHANGE, USE, Area, has_perm
from portal.text import one_line
from profiles.models import ComputeProfile
from services import actions as services
from services import tasks as service_tasks
from workspaces import offers, quotas


class RequestRefused(Exception):
    """A workspace request the user cannot make; the message says why, for the page."""


@transaction.atomic
def request_workspace(user, profile: ComputeProfile, name: str = "") -> Workspace:
    """Check access and quotas, create the workspace, audit it, then claim a warm instance
    (ready at once) or provision on commit."""
    if not ComputeProfile.objects.usable_by(user).filter(pk=profile.pk).exists():
        raise RequestRefused(f"You may not use the compute profile “{profile}”.")
    prefetch_related_objects([profile], "resource_groups")  # read by every check below
    _refuse_if_unavailable(user, profile, offers.why_unavailable(profile, {}))

    need = quotas.need_of(profile)
    # The group must also have room for the GPUs of the profile's default stack, which
    # follows without asking (counted on the stack itself once it exists).
    stack_gpus = service_tasks.default_stack_gpus(profile, user)
    with_stack = {**need, "gpus": need["gpus"] + stack_gpus}
    what = "this profile with its default services" if stack_gpus else "this profile"
    team = _group_to_charge(user, profile, with_stack, what=what)

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


def _refuse_if_unavailable(user, profile: ComputeProfile, why: str) -> None:
    """Refuse, in the card's words, what the self-service card shows "Unavailable right
    now"; `why` is the administrator's reason (`offers.why_unavailable`), "" when the
    profile is available."""
    if why:
        raise RequestRefused(f"“{profile}”: {offers.refusal(user, profile.infrastructure, why)}")


def _group_to_charge(
    owner, profile, need, starting: Workspace | None = None, whose="your", what="this profile"
):
    """The group whose quota takes `need` (quotas rule 3), None for an owner outside every
    group; RequestRefused saying why when no group of the owner's has room. The groups are
    locked until the end of the caller's transaction. `starting`: the stopped workspace
    being charged again, which stays in its group while that has room; `what` is what
    the refusal says needs the room."""
    groups = quotas.lock_groups(owner, profile)
    if starting is not None:
        groups.sort(key=lambda team: team.pk != starting.team_id)  # stable: by name after
    if groups:
        usages = quotas.usage(groups, starting=starting)
        team, reasons = quotas.choose_group(usages, need, what)
        if team is None:
            raise RequestRefused("Quota reached: " + "; ".join(reasons) + ".")
        return team
    if owner.teams.exists():
        # Only a user outside every group (a superuser) goes unlimited. Anyone in a group
        # with none to charge (say a superuser in Viewer groups only) is refused, never
        # left without a quota or a lifetime.
        raise RequestRefused(
            f"None of {whose} groups grants self-service use of “{profile}”; "
            "ask your administrator."
        )
    return None


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
    before = _audited(workspace)
    if not transition(workspace, State.DELETING, actor=user, message="deletion requested"):
        raise RequestRefused("The workspace changed at the same moment; try again.")
    promises.give_back(workspace, f"workspace {workspace.pk} was deleted while it waited")
    _record(user, workspace, before, "deleted workspace")
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
    before = _audited(workspace)
    if not tasks.request_stop(workspace, actor=user):
        raise RequestRefused("The workspace changed at the same moment; try again.")
    _record(user, workspace, before, "stopped workspace")


@transaction.atomic
def start_workspace(user, workspace: Workspace) -> None:
    """Check that its owner may still use its profile (and its services profile) and that a
    group of the owner's has room for what they hold now, charge that group, move the
    stopped workspace to starting, start on commit."""
    if not may_change(user, workspace):
        raise RequestRefused("You may not start this workspace.")
    # One Start at a time: a second one waits here, then reads that it is starting.
    Workspace.objects.select_for_update(of=("self",)).filter(pk=workspace.pk).first()
    workspace.refresh_from_db()
    if workspace.state != State.STOPPED:
        raise RequestRefused(
            f"Only a stopped workspace can be started; this one is {_state(workspace)}."
        )
    who = "You" if workspace.owner_id == user.pk else "Its owner"
    owner, profile = workspace.owner, workspace.profile
    # Starting takes GPUs again, as a request would: not for a profile that was unpublished
    # or taken away from the owner's groups since.
    if not ComputeProfile.objects.usable_by(owner).filter(pk=workspace.profile_id).exists():
        raise RequestRefused(
            f"{who} may no longer use the compute profile “{profile}”, "
            "so this workspace cannot start again."
        )
    _refuse_if_unavailable(user, profile, offers.slices_gone(profile, {}))
    # The start deploys its services stack again (`services.tasks.start_for_workspace`).
    stack = services.live_deployment(workspace)
    if stack is not None and not services.may_run(owner, stack):
        raise RequestRefused(
            f"{who} may no longer use the services profile “{stack.profile_name}” it "
            "runs; remove its services to start it."
        )
    # What it takes is what the profile holds now (`Workspace.spec()` reads the profile),
    # plus the GPUs its stack holds of its own.
    held = quotas.need_of(profile)
    need = dict(held)
    if stack is not None:
        need["gpus"] += quotas.deployed_stack_gpus(stack)
    whose = "your" if workspace.owner_id == user.pk else "its owner's"
    team = _group_to_charge(
        owner, profile, need, starting=workspace, whose=whose, what="starting it"
    )
    moved, expires_at = "", workspace.expires_at
    if team and team.pk != workspace.team_id:
        moved = f", charged to group “{team}”"
        expires_at = _expiry_in(team, expires_at)
        if expires_at != workspace.expires_at:
            when = timezone.localtime(expires_at)
            moved += f"; it expires at {when:%Y-%m-%d %H:%M %Z}, the group's maximum"
    before = _audited(workspace)
    if not transition(
        workspace,
        State.STARTING,
        actor=user,
        message=f"start requested{moved}",
        failure_reason="",
        team=team,
        expires_at=expires_at,
        gpus=held["gpus"],
        mig_slices=held["mig_slices"],
        profile_version=profile.version,
    ):
        raise RequestRefused("The workspace changed at the same moment; try again.")
    _record(user, workspace, before, "started workspace")
    transaction.on_commit(lambda: tasks.enqueue_start(workspace.pk))


def _expiry_in(team, expires_at):
    """The expiry of a workspace charged to `team` from now on: the one it has, or the
    group's maximum lifetime from now where that comes first (None: it never expires). A
    move to another group must not keep a lifetime that group does not allow."""
    longest = lifetime.max_lifetime(team)
    if longest is None:
        return expires_at
    bound = timezone.now() + longest
    return bound if expires_at is None or bound < expires_at else expires_at


def _state(workspace: Workspace) -> str:
    return workspace.get_state_display().lower()


def _audited(workspace: Workspace) -> dict:
    """What an action's audit entry keeps of the workspace, before and after the action:
    its state, and the group and expiry a Start may change."""
    return {
        "state": workspace.state,
        "team": str(workspace.team) if workspace.team else None,
        "expires_at": workspace.expires_at.isoformat() if workspace.expires_at else None,
    }


def _record(user, workspace: Workspace, before: dict, message: str) -> None:
    after = _audited(workspace)
    audit.record(user, AuditAction.ACTION, workspace, before=before, after=after, message=message)


@transaction.atomic
def reveal_secret(user, workspace: Workspace) -> str:
    """The workspace's secret for its owner, exactly once (a conditional UPDATE). The
    reveal is audited, as a service token's is; the secret never is."""
    if workspace.owner_id != user.pk or not workspace.secret:
        return ""
    shown = Workspace.objects.filter(pk=workspace.pk, secret_shown=False).update(secret_shown=True)
    if shown != 1:
        return ""
    audit.record(user, AuditAction.ACTION, workspace, message="revealed the workspace's token")
    return workspace.secret
