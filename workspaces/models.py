from datetime import timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from pools.drivers.base import WorkspaceSpec
from pools.lifecycle import LIVE_STATES, LifecycleEvent, LifecycleModel
from portal.crypto import EncryptedTextField
from portal.roles import USE, Area, has_perm


class WorkspaceQuerySet(models.QuerySet):
    """Owners see their own workspaces; admins with the Workspaces area see every one."""

    area = Area.WORKSPACES

    def for_user(self, user, action: str):
        if has_perm(user, Area.WORKSPACES, action):
            return self
        if has_perm(user, Area.SELF_SERVICE, USE):
            return self.filter(owner=user)
        return self.none()

    def live(self):
        return self.filter(state__in=LIVE_STATES)


class Workspace(LifecycleModel):
    """A user's GPU workspace: one instance of a compute profile on its infrastructure."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="workspaces"
    )
    profile = models.ForeignKey(
        "profiles.ComputeProfile", on_delete=models.PROTECT, related_name="workspaces"
    )
    # Where it was made, kept even if the profile later moves: deletion must go there.
    infrastructure = models.ForeignKey(
        "profiles.Infrastructure", on_delete=models.PROTECT, related_name="workspaces"
    )
    profile_version = models.PositiveIntegerField(default=1)
    # The group whose quota this workspace is charged to (see workspaces.quotas).
    team = models.ForeignKey(
        "portal.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="workspaces"
    )
    name = models.CharField(max_length=60, blank=True)

    # Counted resources, copied from the profile at request time so quotas never change
    # under a running workspace when an admin edits the profile.
    gpus = models.PositiveIntegerField(default=0)
    mig_slices = models.PositiveIntegerField(default=0)

    connection = models.JSONField(default=dict, blank=True)
    detail = models.JSONField(default=dict, blank=True, help_text="What the driver made.")
    secret = EncryptedTextField(blank=True, help_text="e.g. a Jupyter token; shown once.")
    secret_shown = models.BooleanField(default=False)

    created = models.DateTimeField(default=timezone.now, db_index=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["state", "heartbeat"])]

    def __str__(self) -> str:
        return self.name or self.resource_name

    def get_absolute_url(self) -> str:
        return reverse("workspaces:detail", args=[self.pk])

    @property
    def resource_name(self) -> str:
        """The stable name every driver finds this workspace's resources by."""
        return f"ws-{self.pk}"

    def spec(self) -> WorkspaceSpec:
        return WorkspaceSpec.from_profile(
            self.resource_name,
            self.owner.get_username(),
            self.profile,
            labels={"portal/workspace": str(self.pk)},
        )

    def log_event(self, from_state: str, to_state: str, message: str, actor=None):
        return self.events.create(
            from_state=from_state, to_state=to_state, message=message[:300], actor=actor
        )

    def steps(self):
        """Progress steps done within a state, in order (not the transitions)."""
        return [event for event in self.events.all() if not event.is_transition]

    @property
    def has_unshown_secret(self) -> bool:
        return bool(self.secret) and not self.secret_shown

    @property
    def lifetime_left(self):
        if self.expires_at is None:
            return None
        return max(self.expires_at - timezone.now(), timedelta(0))


class WorkspaceEvent(LifecycleEvent):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="events")

    class Meta(LifecycleEvent.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.workspace}: {self.from_state} → {self.to_state} {self.message}"


# Services deployed into workspaces (issue 7) live in their own module.
from workspaces.service_models import (  # noqa: E402, F401
    ComponentDeployment,
    ServiceDeployment,
    ServiceDeploymentEvent,
)
