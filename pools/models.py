from datetime import time, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone

from pools.drivers.base import WorkspaceSpec
from pools.history import keep_as_history
from pools.lifecycle import (
    LIVE_STATES,
    POOL_LIFECYCLE,
    WORKSPACE_LIFECYCLE,
    Lifecycle,
    LifecycleEvent,
    LifecycleModel,
    State,
)
from portal.crypto import EncryptedTextField
from portal.querysets import restricted_manager
from portal.roles import USE, Area, has_perm
from profiles.choices import MigConfigState
from profiles.models import pool_size_validator

KEPT_NAME = "Its name, kept once it is deleted (see pools.history)."


class GpuAllocation(models.Model):
    """One GPU or MIG device of an infrastructure, held by one workspace (or pool instance).

    The unique constraint is what makes "two workspaces never get the same GPU or slice"
    true under concurrency: the second INSERT for a device fails, whatever the workers do.
    """

    infrastructure = models.ForeignKey(
        "profiles.Infrastructure", on_delete=models.CASCADE, related_name="gpu_allocations"
    )
    holder = models.CharField(
        max_length=100, db_index=True, help_text="The resource name, e.g. ws-42 or pool-7."
    )
    group_index = models.PositiveSmallIntegerField(default=0)
    device_uuid = models.CharField(max_length=100)
    gpu_index = models.PositiveSmallIntegerField()
    gpu_name = models.CharField(max_length=100, blank=True)
    mig_profile = models.CharField(max_length=20, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["infrastructure", "gpu_index", "device_uuid"]
        constraints = [
            models.UniqueConstraint(
                fields=["infrastructure", "device_uuid"], name="one_holder_per_device"
            )
        ]

    def __str__(self) -> str:
        return f"{self.holder}: {self.label}"

    @property
    def label(self) -> str:
        if self.mig_profile:
            return f"GPU {self.gpu_index} MIG {self.mig_profile}"
        return f"GPU {self.gpu_index}"


class GpuFault(models.Model):
    """A GPU of this host that NVML lists and CUDA did not see, run as a workspace runs nor
    on the host (`pools.gpucheck`): held back from new allocations for `HOLD` so one
    failing GPU does not fail every request placed on it. Forgotten once CUDA sees it again
    (the health check, every few minutes, or a workspace's check); after the hold the next
    workspace given it checks it again."""

    HOLD = timedelta(minutes=30)

    infrastructure = models.ForeignKey(
        "profiles.Infrastructure", on_delete=models.CASCADE, related_name="gpu_faults"
    )
    device_uuid = models.CharField(max_length=100)
    gpu_index = models.PositiveSmallIntegerField()
    reason = models.TextField(help_text="What CUDA said.")
    seen = models.DateTimeField(help_text="When the check last failed.")

    class Meta:
        ordering = ["infrastructure", "gpu_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["infrastructure", "device_uuid"], name="one_fault_per_device"
            )
        ]

    def __str__(self) -> str:
        return f"GPU {self.gpu_index} ({self.device_uuid}): {self.reason}"

    @property
    def until(self):
        """When its hold ends, in the portal's time zone."""
        return timezone.localtime(self.seen + self.HOLD)

    @classmethod
    def held_back(cls, infrastructure, now=None):
        """The faults whose hold has not ended."""
        since = (now or timezone.now()) - cls.HOLD
        return cls.objects.filter(infrastructure=infrastructure, seen__gt=since)


# -- warm pools (issue 6) ---------------------------------------------------------------


class Pool(models.Model):
    """The warm-pool controller's state for one compute profile (made on first use).

    The profile says how many instances it wants (`desired_capacity`, schedules); this row
    says whether the loop may act on it: paused by an admin, backing off after failed
    provisioning, or halted after `warmpool.HARD_LIMIT` consecutive failures.
    """

    profile = models.OneToOneField(
        "profiles.ComputeProfile", on_delete=models.CASCADE, related_name="pool"
    )
    paused = models.BooleanField(default=False)
    consecutive_failures = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)
    halted = models.BooleanField(
        default=False, help_text="Set after too many failures in a row; Resume clears it."
    )
    last_failure = models.CharField(max_length=300, blank=True)
    updated = models.DateTimeField(auto_now=True)

    # Sizing by a service-level objective (issue 14), instead of the profile's fixed
    # desired capacity and schedules: see `pools.sizing` and `pools.slo`.
    class Sizing(models.TextChoices):
        FIXED = "fixed", "Fixed capacity (the profile's desired capacity and schedules)"
        SLO = "slo", "Service-level objective (the loop sizes the pool)"

    sizing = models.CharField(max_length=10, choices=Sizing.choices, default=Sizing.FIXED)
    slo_percent = models.FloatField(
        "SLO: % of requests", default=95.0, help_text="e.g. 95: 95 % of requests …"
    )
    slo_seconds = models.PositiveIntegerField(
        "SLO: ready within (seconds)", default=60, help_text="… ready within this many seconds."
    )
    idle_budget = models.FloatField(
        "idle budget (GPU-hours per day)",
        null=True,
        blank=True,
        help_text="At most this many idle GPU-hours a day (a MIG slice counts as its share of "
        "a GPU); the budget wins over the SLO. Empty: no limit.",
    )
    min_size = models.PositiveIntegerField("minimum size", default=0)
    max_size = models.PositiveIntegerField("maximum size", default=10)

    objects = restricted_manager(Area.POOLS)

    def __str__(self) -> str:
        return f"Warm pool of {self.profile}"

    def get_absolute_url(self) -> str:
        return reverse("pools:pool_detail", args=[self.profile_id])

    @property
    def sized_by_slo(self) -> bool:
        return self.sizing == self.Sizing.SLO


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

    def live_counts_by_owner(self, users) -> dict[int, int]:
        """{user id: live workspaces} for `users` (the user pages show it)."""
        rows = self.live().filter(owner__in=users).values("owner").annotate(n=models.Count("pk"))
        return {row["owner"]: row["n"] for row in rows}


class Workspace(LifecycleModel):
    """A user's GPU workspace: one instance of a compute profile on its infrastructure."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="workspaces"
    )
    # While it is in use, its profile and infrastructure cannot be deleted; once deleted,
    # it is history and keeps their names (`pools.history`).
    profile = models.ForeignKey(
        "profiles.ComputeProfile",
        null=True,
        on_delete=keep_as_history,
        related_name="workspaces",
    )
    profile_name = models.CharField(max_length=100, blank=True, help_text=KEPT_NAME)
    # Where it was made, kept even if the profile later moves: deletion must go there.
    infrastructure = models.ForeignKey(
        "profiles.Infrastructure",
        null=True,
        on_delete=keep_as_history,
        related_name="workspaces",
    )
    infrastructure_name = models.CharField(max_length=100, blank=True, help_text=KEPT_NAME)
    profile_version = models.PositiveIntegerField(default=1)
    # The group whose quota this workspace is charged to (see workspaces.quotas).
    team = models.ForeignKey(
        "portal.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="workspaces"
    )
    name = models.CharField(max_length=60, blank=True)

    # Counted resources, copied from the profile at request time and at each Start, so
    # quotas never change under a running workspace when an admin edits the profile.
    gpus = models.PositiveIntegerField(default=0)
    mig_slices = models.PositiveIntegerField(default=0)

    connection = models.JSONField(default=dict, blank=True)
    detail = models.JSONField(default=dict, blank=True, help_text="What the driver made.")
    secret = EncryptedTextField(blank=True, help_text="e.g. a Jupyter token; shown once.")
    secret_shown = models.BooleanField(default=False)

    # Idle detection (issue 16, `pools.idle`): the last activity seen (or snooze), when it
    # is stopped once its owner has been warned, the snoozes in a row, and the CPU seconds
    # its processes had used at the last look.
    active_at = models.DateTimeField("last activity", null=True, blank=True)
    idle_stop_at = models.DateTimeField("stopped for being idle at", null=True, blank=True)
    idle_snoozes = models.PositiveSmallIntegerField(default=0)
    cpu_seconds = models.FloatField(null=True, blank=True)
    idle_checked_at = models.DateTimeField(null=True, blank=True)

    created = models.DateTimeField(default=timezone.now, db_index=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # When the watcher last found it healthy or degraded it (`pools.watch`).
    checked_at = models.DateTimeField("last checked", null=True, blank=True)

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        # The tables keep the names they had when this model lived in `workspaces`.
        db_table = "workspaces_workspace"
        indexes = [
            models.Index(fields=["state", "heartbeat"], name="workspaces__state_6da9c7_idx"),
            # The list of every workspace sorts by these (and its id) a page at a time.
            models.Index(fields=["name", "id"], name="workspace_name_order"),
            models.Index(fields=["ready_at", "id"], name="workspace_ready_order"),
            models.Index(fields=["expires_at", "id"], name="workspace_expiry_order"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=sorted(WORKSPACE_LIFECYCLE.reapable))
                | models.Q(profile__isnull=False, infrastructure__isnull=False),
                name="workspace_in_use_keeps_its_links",
            )
        ]

    def __str__(self) -> str:
        return self.name or self.resource_name

    def get_absolute_url(self) -> str:
        return reverse("workspaces:detail", args=[self.pk])

    @classmethod
    def in_use(cls) -> models.Q:
        """Workspaces that may hold resources (a failed one keeps its files until deleted)."""
        return models.Q(state__in=cls.lifecycle.holding_states)

    @property
    def profile_label(self) -> str:
        return str(self.profile) if self.profile_id else f"{self.profile_name} (deleted)"

    @property
    def infrastructure_label(self) -> str:
        if self.infrastructure_id:
            return str(self.infrastructure)
        return f"{self.infrastructure_name} (deleted)"

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

    def resources_spec(self) -> WorkspaceSpec:
        """The driver spec of the resources it runs on: an adopted warm-pool instance's
        (whose resources keep the instance's name), else its own."""
        adopted = PoolInstance.objects.filter(workspace=self, state=State.CLAIMED)
        instance = adopted.select_related("profile").first()
        return instance.spec() if instance else self.spec()

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
        db_table = "workspaces_workspaceevent"

    def __str__(self) -> str:
        return f"{self.workspace}: {self.from_state} → {self.to_state} {self.message}"


class PoolInstance(LifecycleModel):
    """A pre-provisioned, ready-to-use instance of a compute profile, owned by no user.

    Made by the same drivers and tasks as a workspace, under the stable name `pool-<id>`.
    On claim it moves ready → claimed and records the workspace that adopted it: from then
    on the workspace's resources are the ones named `pool-<id>` (`Workspace.resources_spec`).
    """

    lifecycle = POOL_LIFECYCLE
    # Fewer retries than a user's workspace: the pool's own backoff takes over after this.
    max_attempts = 3

    profile = models.ForeignKey(
        "profiles.ComputeProfile",
        null=True,
        on_delete=keep_as_history,
        related_name="pool_instances",
    )
    profile_name = models.CharField(max_length=100, blank=True, help_text=KEPT_NAME)
    infrastructure = models.ForeignKey(
        "profiles.Infrastructure",
        null=True,
        on_delete=keep_as_history,
        related_name="pool_instances",
    )
    infrastructure_name = models.CharField(max_length=100, blank=True, help_text=KEPT_NAME)
    profile_version = models.PositiveIntegerField(default=1)
    gpu_share = models.FloatField(
        null=True,
        blank=True,
        help_text=(
            "GPUs it holds, a MIG slice as its share of a GPU, as its profile was when it was "
            "made: its idle GPU-hours weigh this, whatever edits the profile since."
        ),
    )
    workspace = models.OneToOneField(
        "pools.Workspace",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pool_instance",
        help_text=(
            "The workspace that claimed it and now owns its resources, or that waits for it "
            "while it provisions (promised)."
        ),
    )
    unhealthy = models.BooleanField(default=False)
    checked_at = models.DateTimeField(null=True, blank=True)

    connection = models.JSONField(default=dict, blank=True)
    detail = models.JSONField(default=dict, blank=True, help_text="What the driver made.")
    secret = EncryptedTextField(blank=True)

    created = models.DateTimeField(default=timezone.now, db_index=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = restricted_manager(Area.POOLS)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["profile", "state", "ready_at"], name="pool_claim_order"),
            models.Index(fields=["state", "heartbeat"], name="pool_in_flight"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(state__in=sorted(POOL_LIFECYCLE.reapable))
                | models.Q(profile__isnull=False, infrastructure__isnull=False),
                name="pool_instance_in_use_keeps_its_links",
            )
        ]

    def __str__(self) -> str:
        return self.resource_name

    @classmethod
    def in_use(cls) -> models.Q:
        """Instances that may hold resources, and claimed ones whose workspace may (the
        workspace runs on the instance's resources)."""
        return models.Q(state__in=cls.lifecycle.holding_states) | models.Q(
            state=State.CLAIMED, workspace__state__in=Workspace.lifecycle.holding_states
        )

    @property
    def resource_name(self) -> str:
        return f"pool-{self.pk}"

    def spec(self) -> WorkspaceSpec:
        return WorkspaceSpec.from_profile(
            self.resource_name, "", self.profile, labels={"portal/pool-instance": str(self.pk)}
        )

    def log_event(self, from_state: str, to_state: str, message: str, actor=None):
        return self.events.create(
            from_state=from_state, to_state=to_state, message=message[:300], actor=actor
        )


class PoolInstanceEvent(LifecycleEvent):
    instance = models.ForeignKey(PoolInstance, on_delete=models.CASCADE, related_name="events")

    class Meta(LifecycleEvent.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.instance}: {self.from_state} → {self.to_state} {self.message}"


WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def weekdays_label(days: list[int]) -> str:
    """[5, 6] → "Sat–Sun"; [0, 2] → "Mon, Wed"; runs of three or more become ranges."""
    days = sorted(set(days))
    if len(days) == 7:
        return "Every day"
    parts, start = [], None
    for i, day in enumerate(days):
        if start is None:
            start = day
        if i + 1 == len(days) or days[i + 1] != day + 1:
            if day - start >= 1:
                parts.append(f"{WEEKDAYS[start]}–{WEEKDAYS[day]}")
            else:
                parts.append(WEEKDAYS[start])
            start = None
    return ", ".join(parts)


class PoolSchedule(models.Model):
    """A weekly time window (organisation time zone) with its own desired capacity.

    The rule: windows of one profile must not overlap (the form refuses it), so at any
    moment at most one window applies and there is nothing to rank. A window runs from
    `start_time` to `end_time` on each of its weekdays; an end of 00:00 means midnight at the
    end of the day. Windows across midnight are two windows (e.g. Fri 18:00–00:00 and
    Sat–Sun 00:00–00:00).
    """

    profile = models.ForeignKey(
        "profiles.ComputeProfile", on_delete=models.CASCADE, related_name="pool_schedules"
    )
    name = models.CharField(max_length=100, blank=True)
    weekdays = models.JSONField(default=list, help_text="0 = Monday … 6 = Sunday.")
    start_time = models.TimeField(default=time(0, 0))
    end_time = models.TimeField(default=time(0, 0), help_text="00:00 means midnight.")
    desired_capacity = models.PositiveIntegerField(validators=[pool_size_validator()])
    created = models.DateTimeField(auto_now_add=True)

    objects = restricted_manager(Area.POOLS)

    class Meta:
        ordering = ["profile__name", "start_time", "pk"]
        verbose_name = "pool schedule"

    def __str__(self) -> str:
        label = f"{self.days_label} {self.start_time:%H:%M}–{self.end_time:%H:%M}"
        return f"{self.name} ({label})" if self.name else label

    def get_absolute_url(self) -> str:
        return reverse("pools:poolschedule_detail", args=[self.pk])

    @property
    def days_label(self) -> str:
        return weekdays_label(self.weekdays)

    @property
    def start_minute(self) -> int:
        return self.start_time.hour * 60 + self.start_time.minute

    @property
    def end_minute(self) -> int:
        end = self.end_time.hour * 60 + self.end_time.minute
        return end or 24 * 60

    def covers(self, weekday: int, minute: int) -> bool:
        return weekday in self.weekdays and self.start_minute <= minute < self.end_minute

    def overlaps(self, other: "PoolSchedule") -> bool:
        if not set(self.weekdays) & set(other.weekdays):
            return False
        return self.start_minute < other.end_minute and other.start_minute < self.end_minute

    def clean(self):
        errors = {}
        if not self.weekdays:
            errors["weekdays"] = "Choose at least one day."
        if self.start_minute >= self.end_minute:
            errors["end_time"] = (
                "The window must end after it starts; for a window across midnight add two "
                "windows (e.g. 18:00–00:00 and 00:00–06:00)."
            )
        if errors:
            raise ValidationError(errors)
        if self.profile_id is None:
            return
        for other in PoolSchedule.objects.filter(profile_id=self.profile_id).exclude(pk=self.pk):
            if self.overlaps(other):
                raise ValidationError(
                    {
                        "start_time": f"Overlaps the window “{other}” of the same profile. "
                        "Windows of one profile may not overlap: shorten one of them."
                    }
                )

    def audit_snapshot(self) -> dict:
        # Times as text: the audit log's JSON encoder knows dates, not times of day.
        return {
            "start_time": f"{self.start_time:%H:%M}",
            "end_time": f"{self.end_time:%H:%M}",
            "window": str(self),
        }


class LoopDecision(models.Model):
    """One decision of the warm-pool loop for one profile: what it saw and what it did."""

    class Action(models.TextChoices):
        NONE = "none", "No change"
        CREATE = "create", "Create"
        DELETE = "delete", "Delete extras"
        REPLACE = "replace", "Replace"
        BACKOFF = "backoff", "Backing off"
        HALTED = "halted", "Halted"
        PAUSED = "paused", "Paused"
        YIELD = "yield", "Yield to users"
        UNUSABLE = "unusable", "Infrastructure not usable"

    time = models.DateTimeField(default=timezone.now, db_index=True)
    profile = models.ForeignKey(
        "profiles.ComputeProfile", on_delete=models.CASCADE, related_name="pool_decisions"
    )
    desired = models.PositiveIntegerField()
    ready = models.PositiveIntegerField()
    provisioning = models.PositiveIntegerField(help_text="Requested or provisioning.")
    deleting = models.PositiveIntegerField(default=0)
    action = models.CharField(max_length=10, choices=Action.choices)
    count = models.PositiveIntegerField(default=0, help_text="Instances created or deleted.")
    reason = models.CharField(max_length=500)

    objects = restricted_manager(Area.POOLS)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [models.Index(fields=["profile", "time"], name="decision_profile_time")]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M} {self.profile_id}: {self.action} {self.count}"


class LoopLock(models.Model):
    """A named lock row with an expiry, for databases without advisory locks (SQLite)."""

    name = models.CharField(max_length=100, primary_key=True)
    holder = models.CharField(max_length=64, blank=True)
    expires = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


# A node's MIG config state (`MigConfigState`). Applying moves a node to pending (labelled),
# refused (workspaces on it) or not applied (missing, other GPUs, no GPU product label);
# reading mig-manager's labels moves a labelled node between pending, rebooting, success
# and failed, or back to not applied when its label changed. A refused node is not read:
# it stays refused until the next apply (`pools.mig_apply`).
_APPLIED = {MigConfigState.PENDING, MigConfigState.REFUSED, MigConfigState.NOT_APPLIED}
_READ = {MigConfigState.REBOOTING, MigConfigState.SUCCESS, MigConfigState.FAILED}
NODE_PARTITION_LIFECYCLE = Lifecycle(
    {
        state: frozenset((_APPLIED | _READ) - {state})
        for state in (
            MigConfigState.NOT_APPLIED,
            MigConfigState.PENDING,
            MigConfigState.REBOOTING,
            MigConfigState.SUCCESS,
            MigConfigState.FAILED,
        )
    }
    | {MigConfigState.REFUSED: frozenset(_APPLIED - {MigConfigState.REFUSED})}
)


class NodePartition(models.Model):
    """One node of a partitioning: whether it is draining, and its MIG config state.

    The state moves only by `pools.lifecycle.transition` along `NODE_PARTITION_LIFECYCLE`
    (`pools.partitions.set_node_state`), each move writing a `NodePartitionEvent`.
    """

    lifecycle = NODE_PARTITION_LIFECYCLE

    strategy = models.ForeignKey(
        "profiles.PartitioningStrategy", on_delete=models.CASCADE, related_name="node_states"
    )
    name = models.CharField(max_length=253)
    draining = models.BooleanField(
        default=False, help_text="No new workspaces are placed here while it drains."
    )
    state = models.CharField(max_length=10, choices=MigConfigState.choices, blank=True)
    config_label = models.CharField(
        max_length=63, blank=True, help_text="nvidia.com/mig.config as last read."
    )
    message = models.CharField(max_length=300, blank=True)
    state_changed = models.DateTimeField(default=timezone.now)
    # When the portal last wrote or read the node's labels.
    heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "profiles_nodepartition"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["strategy", "name"], name="unique_node_partition")
        ]

    def __str__(self) -> str:
        return self.name

    def log_event(self, from_state: str, to_state: str, message: str, actor=None):
        NodePartitionEvent.objects.create(
            node=self, from_state=from_state, to_state=to_state, message=message[:300], actor=actor
        )


class NodePartitionEvent(LifecycleEvent):
    node = models.ForeignKey(NodePartition, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=10, choices=MigConfigState.choices, blank=True)
    to_state = models.CharField(max_length=10, choices=MigConfigState.choices, blank=True)

    class Meta(LifecycleEvent.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.node}: {self.from_state or 'not applied'} → {self.to_state}"


class SupervisedProcess(models.Model):
    """A process `pools.supervisor` started on a host, from its start until it is stopped.

    The record file next to the process lives in its workspace's directory, which the
    workspace can change or delete; this row is what the supervisor trusts (it signals only
    a registered PID with the registered start time), and what the sweep reads to stop
    every process whose workspace is gone (`supervisor.stop_orphans`).
    """

    host = models.CharField(max_length=255)
    boot_id = models.CharField(max_length=36, help_text="The host's boot it was started in.")
    pid = models.PositiveIntegerField()
    start_time = models.BigIntegerField(help_text="Clock ticks since boot (/proc/PID/stat).")
    argv = models.JSONField(default=list)
    holder = models.CharField(
        max_length=100, blank=True, db_index=True, help_text="The workspace's resource name."
    )
    infrastructure = models.ForeignKey(
        "profiles.Infrastructure",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="supervised_processes",
    )
    directory = models.TextField(help_text="The working directory it was started in.")
    record_path = models.TextField(blank=True, help_text="Where its record file was saved.")
    port = models.PositiveIntegerField(null=True, blank=True)
    uid = models.PositiveIntegerField(null=True, blank=True)
    sandboxed = models.BooleanField(default=False)
    started = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["started", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "boot_id", "pid", "start_time"], name="one_row_per_process"
            )
        ]

    def __str__(self) -> str:
        return f"{self.holder or '-'}: pid {self.pid} on {self.host}"
