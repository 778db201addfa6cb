"""The usage ledger and the prices it is charged at.

`UsageInterval` rows are derived data: `usage.ledger` rebuilds them from the lifecycle
events of workspaces and warm-pool instances, so they can always be deleted and made again.
`Price` rows are what administrators set; `usage.prices` falls back to the public prices of
`usage.public_prices` where no price is set.
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from portal.querysets import restricted_manager
from portal.roles import USE, VIEW, Area, has_perm


class UsageIntervalQuerySet(models.QuerySet):
    """Admins with a view of all workspaces see all usage; everyone else sees the usage of
    their own groups (a group's members are who it is shown back to) and their own."""

    def for_user(self, user, action: str = VIEW):
        if has_perm(user, Area.WORKSPACES, VIEW):
            return self
        if has_perm(user, Area.SELF_SERVICE, USE):
            return self.filter(models.Q(team__in=user.teams.all()) | models.Q(owner=user))
        return self.none()

    def overlapping(self, start, end):
        """Intervals that overlap [start, end): the open ones are still running."""
        return self.filter(start__lt=end).filter(
            models.Q(end__isnull=True) | models.Q(end__gt=start)
        )


class UsageInterval(models.Model):
    """One resource group of one workspace (or warm-pool instance) in one state, from one
    lifecycle event to the next. `end` is empty while the state lasts (accounted up to now).

    A profile with several resource groups gives one row per group for the same span;
    `counts_workspace` is set on the first only, so workspace-hours count a workspace once.
    """

    class Kind(models.TextChoices):
        WORKSPACE = "workspace", "Workspace"
        WARM_IDLE = "warm_idle", "Warm-pool idle"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    source_id = models.PositiveBigIntegerField(help_text="The workspace's or instance's id.")
    position = models.PositiveIntegerField(help_text="Order within its source.")
    state = models.CharField(max_length=20)
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    team = models.ForeignKey("portal.Team", null=True, on_delete=models.SET_NULL, related_name="+")
    profile = models.ForeignKey(
        "profiles.ComputeProfile", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    profile_name = models.CharField(max_length=100, blank=True)
    infrastructure = models.ForeignKey(
        "profiles.Infrastructure", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    infrastructure_name = models.CharField(max_length=100, blank=True)
    provider = models.CharField(max_length=10, blank=True)
    region = models.CharField(max_length=40, blank=True)

    # What it holds in this state (all zero when it holds nothing of the kind).
    gpu_model = models.CharField(max_length=20, blank=True)
    # Counts times node counts, which a 32-bit column may not hold (`usage.prices.lines_of`).
    gpus = models.PositiveBigIntegerField(default=0, help_text="Whole GPUs.")
    mig_slices = models.PositiveBigIntegerField(default=0)
    gpu_share = models.FloatField(default=0, help_text="GPUs, a MIG slice as its share.")
    instance_type = models.CharField(max_length=60, blank=True)
    instances = models.PositiveBigIntegerField(default=0)
    storage_gb = models.PositiveBigIntegerField(default=0)
    counts_workspace = models.BooleanField(default=False)

    objects = UsageIntervalQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "source_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "source_id", "position"], name="one_interval_per_position"
            )
        ]
        indexes = [models.Index(fields=["start", "end"], name="usage_interval_span")]

    def __str__(self) -> str:
        return f"{self.kind} {self.source_id} #{self.position}: {self.state}"


class UsageShape(models.Model):
    """What one workspace (or warm-pool instance) holds per resource group, as the ledger
    first saw it: a profile edited later does not change its past (`usage.ledger`)."""

    kind = models.CharField(max_length=10, choices=UsageInterval.Kind.choices)
    source_id = models.PositiveBigIntegerField()
    lines = models.JSONField(default=list, help_text="usage.prices.Line fields, per group.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "source_id"], name="one_shape_per_source")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.source_id}"


class LedgerCursor(models.Model):
    """How far the ledger has read the event tables (one row, pk=1).

    Advanced only after the intervals of every event up to it were written, in the same
    transaction: a pass killed in the middle leaves it where it was, and the next pass
    rebuilds the same workspaces again (rebuilding is idempotent).
    """

    workspace_event_id = models.PositiveBigIntegerField(default=0)
    instance_event_id = models.PositiveBigIntegerField(default=0)
    passed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"ledger at events {self.workspace_event_id}/{self.instance_event_id}"


class Price(models.Model):
    """A price an administrator set: per GPU-hour of a GPU model, per hour of a cloud
    instance type (in one region, or any), or per GB-month of storage."""

    class Kind(models.TextChoices):
        GPU_MODEL = "gpu_model", "GPU model (per GPU-hour)"
        INSTANCE_TYPE = "instance_type", "Instance type (per instance-hour)"
        STORAGE = "storage", "Storage (per GB-month)"

    kind = models.CharField(max_length=15, choices=Kind.choices)
    key = models.CharField(
        max_length=60,
        blank=True,
        help_text="The GPU model or instance type; empty for storage.",
    )
    region = models.CharField(
        max_length=40, blank=True, help_text="Instance types only: empty means every region."
    )
    amount = models.DecimalField(
        "price (USD)",
        max_digits=12,
        decimal_places=4,
        validators=[MinValueValidator(Decimal("0"))],
    )
    note = models.CharField(max_length=200, blank=True, help_text="e.g. where it comes from.")
    updated = models.DateTimeField(default=timezone.now)

    objects = restricted_manager(Area.PROFILES)

    class Meta:
        ordering = ["kind", "key", "region"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "key", "region"], name="one_price_per_item")
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.STORAGE:
            return "Storage per GB-month"
        return f"{self.key} in {self.region}" if self.region else self.key

    def get_absolute_url(self) -> str:
        return reverse("usage:price_detail", args=[self.pk])
