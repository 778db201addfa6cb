from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.urls import reverse

from portal.querysets import restricted_manager
from portal.roles import Area, Role


class Team(models.Model):
    """A portal group: members share a role (and, later, quotas and profile access)."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)
    # Which profiles the group may use; a profile no group lists is open to every member.
    compute_profiles = models.ManyToManyField(
        "profiles.ComputeProfile", related_name="teams", blank=True
    )
    services_profiles = models.ManyToManyField(
        "profiles.ServicesProfile", related_name="teams", blank=True
    )
    # Quotas: blank means unlimited. Whole GPUs and MIG slices are counted separately.
    max_gpus = models.PositiveIntegerField("max concurrent GPUs", null=True, blank=True)
    max_mig_slices = models.PositiveIntegerField(
        "max concurrent MIG slices", null=True, blank=True
    )
    max_workspaces = models.PositiveIntegerField(
        "max concurrent workspaces", null=True, blank=True
    )
    max_lifetime_hours = models.PositiveIntegerField(
        "max workspace lifetime (hours)", null=True, blank=True
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = restricted_manager(Area.USERS)

    class Meta:
        ordering = ["name"]
        verbose_name = "group"

    def __str__(self) -> str:
        return self.name

    def audit_snapshot(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "role": self.role,
            "members": sorted(self.members.values_list("username", flat=True))
            if self.pk
            else [],
            "compute_profiles": sorted(self.compute_profiles.values_list("name", flat=True))
            if self.pk
            else [],
            "services_profiles": sorted(self.services_profiles.values_list("name", flat=True))
            if self.pk
            else [],
        }


class AuditAction(models.TextChoices):
    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    DELETED = "deleted", "Deleted"
    ACTION = "action", "Action"


class AuditEntry(models.Model):
    """One change to one object: who, when, what, and the object before and after."""

    timestamp = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept as text so the trail still names the actor after the account is deleted.
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=10, choices=AuditAction.choices)
    message = models.CharField(max_length=300, blank=True)
    content_type = models.ForeignKey(ContentType, on_delete=models.PROTECT)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.UUIDField(null=True, blank=True, db_index=True)

    objects = restricted_manager(Area.AUDIT)

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["content_type", "object_id"])]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'} {self.action} {self.object_repr}"

    def get_absolute_url(self) -> str:
        return reverse("portal:auditentry_detail", args=[self.pk])

    def changes(self) -> list[tuple[str, object, object]]:
        """(field, before, after) for each field whose value differs."""
        before = self.before or {}
        after = self.after or {}
        keys = sorted(set(before) | set(after))
        return [(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]
