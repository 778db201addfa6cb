"""Services deployed into a workspace: one deployment of a services profile, per component.

A `ServiceDeployment` moves through the same lifecycle as a workspace (requested →
provisioning ("deploying") → ready, deleting → deleted, failed), plus "redeploy" edges
back to requested. Each `ComponentDeployment` has its own status (pending, deploying,
ready, failed with reason and log tail, unavailable on this infrastructure, removed), its
endpoints and, encrypted, its credential (e.g. the Jupyter token).

The components are copied from the services profile when the deployment is made, so an
admin editing the profile later never changes a running stack; a redeploy copies again.
"""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from pools.drivers.base import GroupSpec, WorkspaceSpec
from pools.history import keep_as_history
from pools.lifecycle import (
    BASE_LIFECYCLE,
    LIVE_STATES,
    WATCHED_EDGES,
    Lifecycle,
    LifecycleEvent,
    LifecycleModel,
    State,
    log_step,
)
from portal.crypto import EncryptedTextField
from services.backends import base as svc
from services.components import component

# Redeploy: a ready or failed deployment goes back to requested (the same rows, re-copied).
# Stopping the workspace (issue 5) also sends a live stack back to requested, deploying or
# not: its components are stopped, and deployed again when the workspace starts.
# Watched like a workspace (issue 12): a ready stack whose component fails its check is
# degraded, then repaired or failed (`services.tasks.check_stack`); redeploying, removing
# or stopping the workspace works from degraded as from ready.
SERVICES_LIFECYCLE = BASE_LIFECYCLE.extend(
    {
        State.READY: {State.REQUESTED},
        State.FAILED: {State.REQUESTED},
        State.PROVISIONING: {State.REQUESTED},
        State.DEGRADED: {State.REQUESTED},
    }
).extend(WATCHED_EDGES)


class ServiceDeployment(LifecycleModel):
    """A services profile deployed (or being deployed) into one workspace."""

    lifecycle = SERVICES_LIFECYCLE

    # The workspace it serves; empty for a warm-pool instance's stack until a workspace
    # claims the instance (`services.tasks.adopt_services`).
    workspace = models.ForeignKey(
        "pools.Workspace",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="service_deployments",
    )
    # Where the stack runs: the infrastructure and the stable name of the workspace or
    # pool instance there, with the WorkspaceSpec it was deployed for (so the tasks need
    # nothing else to find, check or remove it).
    # While the stack is in use its infrastructure cannot be deleted; once deleted, it is
    # history and keeps the infrastructure's name (`pools.history`).
    infrastructure = models.ForeignKey(
        "profiles.Infrastructure",
        null=True,
        on_delete=keep_as_history,
        related_name="service_deployments",
    )
    infrastructure_name = models.CharField(
        max_length=100, blank=True, help_text="Its name, kept once it is deleted."
    )
    target_name = models.CharField(max_length=63)
    spec = models.JSONField(default=dict)
    services_profile = models.ForeignKey(
        "profiles.ServicesProfile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deployments",
    )
    profile_name = models.CharField(max_length=100)
    own_gpus = models.PositiveIntegerField(
        default=0,
        help_text=(
            "GPUs its components hold of their own beside the workspace's (on Kubernetes), "
            "counted when it was made (`services.tasks.own_gpus`); its group's quota counts "
            "them while it is live."
        ),
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The tables keep the names they had when these models lived in `workspaces`.
        db_table = "workspaces_servicedeployment"
        ordering = ["-created", "-id"]
        constraints = [
            # One live stack per workspace: deploy another one after removing this one.
            models.UniqueConstraint(
                fields=["infrastructure", "target_name"],
                condition=models.Q(state__in=[s.value for s in LIVE_STATES]),
                name="one_live_service_deployment_per_workspace",
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=sorted(SERVICES_LIFECYCLE.reapable))
                | models.Q(infrastructure__isnull=False),
                name="service_deployment_in_use_keeps_its_infrastructure",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_name} in {self.workspace or self.target_name}"

    def get_absolute_url(self) -> str:
        if self.workspace_id:
            return reverse("workspaces:detail", args=[self.workspace_id])
        return ""

    @classmethod
    def in_use(cls) -> models.Q:
        """Stacks that may hold resources on their infrastructure."""
        return models.Q(state__in=cls.lifecycle.holding_states)

    def workspace_spec(self) -> WorkspaceSpec:
        data = dict(self.spec)
        data["groups"] = tuple(GroupSpec(**group) for group in data.get("groups", ()))
        return WorkspaceSpec(**data)

    @staticmethod
    def spec_as_json(spec: WorkspaceSpec) -> dict:
        return asdict(spec)

    def log_event(self, from_state: str, to_state: str, message: str, actor=None):
        return self.events.create(
            from_state=from_state, to_state=to_state, message=message[:300], actor=actor
        )


class ServiceDeploymentEvent(LifecycleEvent):
    deployment = models.ForeignKey(
        ServiceDeployment, on_delete=models.CASCADE, related_name="events"
    )

    class Meta(LifecycleEvent.Meta):
        db_table = "workspaces_servicedeploymentevent"

    def __str__(self) -> str:
        return f"{self.deployment}: {self.from_state} → {self.to_state} {self.message}"


class ComponentStatus(models.TextChoices):
    PENDING = svc.PENDING, "Pending"
    DEPLOYING = svc.DEPLOYING, "Deploying"
    READY = svc.READY, "Ready"
    FAILED = svc.FAILED, "Failed"
    UNAVAILABLE = svc.UNAVAILABLE, "Not available here"
    REMOVED = svc.REMOVED, "Removed"


# How one component of a deployment moves (`ComponentDeployment.move`):
# - pending → deploying once the backend was asked to deploy it (ready or failed at once
#   when it answered so); unavailable when this infrastructure cannot run it; failed when
#   its parameters no longer resolve;
# - deploying ⇄ ready as its checks say (a pod that restarts is deploying again), failed
#   when it exited or did not become ready in time;
# - removed when the deployment is removed (unavailable ones were never there);
# - back to pending from every status when the stack is redeployed or its workspace stops.
COMPONENT_LIFECYCLE = Lifecycle(
    {
        svc.PENDING: frozenset(
            {svc.DEPLOYING, svc.READY, svc.FAILED, svc.UNAVAILABLE, svc.REMOVED}
        ),
        svc.DEPLOYING: frozenset(
            {svc.READY, svc.FAILED, svc.UNAVAILABLE, svc.PENDING, svc.REMOVED}
        ),
        svc.READY: frozenset(
            {svc.DEPLOYING, svc.FAILED, svc.UNAVAILABLE, svc.PENDING, svc.REMOVED}
        ),
        svc.FAILED: frozenset({svc.PENDING, svc.REMOVED}),
        svc.UNAVAILABLE: frozenset({svc.PENDING}),
        svc.REMOVED: frozenset({svc.PENDING}),
    }
)


# The fields of a component's row whose text may come from the component itself.
TEXT_FROM_COMPONENTS = frozenset({"reason", "log_tail"})


class ComponentDeployment(models.Model):
    """One component of a deployment, with its own status, endpoints and credential.

    Its status changes only through `move()` (the transitions are `COMPONENT_LIFECYCLE`).
    """

    lifecycle = COMPONENT_LIFECYCLE

    deployment = models.ForeignKey(
        ServiceDeployment, on_delete=models.CASCADE, related_name="components"
    )
    position = models.PositiveSmallIntegerField(default=0)
    capability = models.CharField(max_length=30)
    component = models.CharField(max_length=40)
    version = models.CharField(max_length=40, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=20, choices=ComponentStatus.choices, default=ComponentStatus.PENDING
    )
    status_changed = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=300, blank=True)
    log_tail = models.TextField(blank=True, help_text="Admins and the owner only.")
    endpoints = models.JSONField(default=list, blank=True)
    secret = EncryptedTextField(blank=True, help_text="e.g. the Jupyter token.")
    detail = models.JSONField(default=dict, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "workspaces_componentdeployment"
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "component"], name="one_row_per_component_per_deployment"
            )
        ]

    def __str__(self) -> str:
        return f"{self.component_name} ({self.get_status_display()})"

    @property
    def component_name(self) -> str:
        found = component(self.component)
        return found.name if found else self.component

    @property
    def has_secret(self) -> bool:
        return bool(self.secret)

    def move(self, to_status: str, *, message: str = "", **fields) -> bool:
        """Move to `to_status` with `fields`; False when another worker moved it first.

        A conditional UPDATE (`... WHERE id = X AND status = old`) and, when the status
        changes, an event of the deployment ("JupyterLab ready") in the same transaction.
        Moving to the status it has only writes `fields` (a check's new reason or
        endpoints), still conditional on that status. Raises IllegalTransition for a move
        `COMPONENT_LIFECYCLE` has no edge for.
        """
        from_status = self.status
        changes = to_status != from_status
        if changes:
            self.lifecycle.check(from_status, to_status)
        # A reason or a log may quote what the component wrote (the workspace's code):
        # a NUL in it would make PostgreSQL refuse the whole update.
        for name in TEXT_FROM_COMPONENTS & fields.keys():
            fields[name] = svc.printable(fields[name])
        now = timezone.now()
        updates = {"status": to_status, "updated": now, **fields}
        if changes:
            updates["status_changed"] = now
        with transaction.atomic():
            rows = type(self)._base_manager.filter(pk=self.pk, status=from_status)
            if rows.update(**updates) != 1:
                return False
            if changes:
                label = ComponentStatus(to_status).label.lower()
                log_step(self.deployment, (message or f"{self.component_name} {label}")[:300])
        for name, value in updates.items():
            setattr(self, name, value)
        return True


class ReservedPort(models.Model):
    """A local port reserved on a host for a component's process, besides the one the
    supervisor registers with the process (`SupervisedProcess.port`): e.g. Ray Client's.

    Reserved before the process starts (`process` empty), then attached to its
    registration, with which it goes: when the supervisor unregisters the process (it is
    stopped, or swept as an orphan, or of an earlier boot), the port is free again
    (`services.backends.ports`)."""

    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    name = models.CharField(max_length=40, help_text="The component's name for the port.")
    process = models.ForeignKey(
        "pools.SupervisedProcess",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="reserved_ports",
        help_text="Empty while its process is being started.",
    )
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "port"], name="one_reservation_per_port")
        ]

    def __str__(self) -> str:
        return f"{self.name} port {self.port} on {self.host}"
