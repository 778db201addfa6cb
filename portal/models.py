from django.apps import apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from portal.crypto import EncryptedTextField
from portal.querysets import RestrictedQuerySet, area_of, restricted_manager
from portal.roles import VIEW, Area, Role, has_perm

# The longest a group's hour settings may be. Well within the calendar (`now + hours` must
# stay a date before year 10000) and longer than any workspace should live or sit idle.
MAX_LIFETIME_HOURS = 24 * 365 * 10
MAX_IDLE_STOP_HOURS = 24 * 365


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
    max_mig_slices = models.PositiveIntegerField("max concurrent MIG slices", null=True, blank=True)
    max_workspaces = models.PositiveIntegerField("max concurrent workspaces", null=True, blank=True)
    max_lifetime_hours = models.PositiveIntegerField(
        "max workspace lifetime (hours)",
        null=True,
        blank=True,
        validators=[
            MaxValueValidator(
                MAX_LIFETIME_HOURS, message="At most %(limit_value)s hours (ten years)."
            )
        ],
    )
    # Idle workspaces (issue 16, `pools.idle`): stopped (files kept) after this many hours
    # without activity; the owner is warned `idle_warning_minutes` before and may snooze.
    idle_stop_hours = models.PositiveIntegerField(
        "stop workspaces idle for (hours)",
        null=True,
        blank=True,
        validators=[
            MinValueValidator(1),
            MaxValueValidator(
                MAX_IDLE_STOP_HOURS, message="At most %(limit_value)s hours (a year)."
            ),
        ],
        help_text="Blank: workspaces are never stopped for being idle.",
    )
    idle_warning_minutes = models.PositiveIntegerField(
        "warn the owner (minutes before)",
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
    )
    idle_max_snoozes = models.PositiveSmallIntegerField(
        "snoozes allowed in a row",
        default=2,
        validators=[MaxValueValidator(20)],
        help_text="Each snooze counts as activity; seen activity resets the count.",
    )
    created = models.DateTimeField(auto_now_add=True)

    objects = restricted_manager(Area.USERS)

    class Meta:
        ordering = ["name"]
        verbose_name = "group"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("portal:team_detail", args=[self.pk])

    def audit_snapshot(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "role": self.role,
            "members": sorted(self.members.values_list("username", flat=True)) if self.pk else [],
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


class AuditQuerySet(RestrictedQuerySet):
    """The audit log, for those who may see it; the entries about people (accounts,
    groups, invitations, SSO, API tokens: names, addresses, memberships) only for those
    who may also see users and groups, as their pages are."""

    area = Area.AUDIT

    def for_user(self, user, action: str):
        entries = super().for_user(user, action)
        if has_perm(user, Area.USERS, VIEW):
            return entries
        return entries.exclude(content_type__in=people_content_types())


def people_content_types() -> list[int]:
    """The content types of the models about people: the user model, ApiToken (a user's
    credential) and every model in the Users area."""
    about_people = [
        model
        for model in apps.get_models()
        if area_of(model) == Area.USERS or model._meta.label in PEOPLE_MODELS
    ]
    return [ct.pk for ct in ContentType.objects.get_for_models(*about_people).values()]


PEOPLE_MODELS = {settings.AUTH_USER_MODEL, "api.ApiToken"}


class AuditEntry(models.Model):
    """One change to one object: who, when, what, and the object before and after."""

    timestamp = models.DateTimeField(auto_now_add=True)
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

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [
            models.Index(fields=["content_type", "object_id"]),
            # The audit log sorts by these (and the id) a page at a time; the newest first,
            # a deep page's ids read from the index alone.
            models.Index(fields=["timestamp", "id"], name="audit_time_order"),
            models.Index(fields=["actor_name", "id"], name="audit_actor_order"),
            models.Index(fields=["action", "id"], name="audit_action_order"),
            models.Index(fields=["object_repr", "id"], name="audit_object_order"),
        ]
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


class Invitation(models.Model):
    """An email address invited into one or more groups through a single-use, expiring link.

    Only a SHA-256 hash of the link's token is stored; resending replaces it, so an older link
    stops working at once.
    """

    email = models.EmailField()
    groups = models.ManyToManyField(Team, related_name="invitations", blank=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitations_sent",
    )
    token_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitations_accepted",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = restricted_manager(Area.USERS)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.email

    @property
    def status(self) -> str:
        from django.utils import timezone

        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"

    @property
    def is_pending(self) -> bool:
        return self.status == "pending"

    def audit_snapshot(self) -> dict:
        return {
            "token_hash": "(hidden)",
            "groups": sorted(self.groups.values_list("name", flat=True)) if self.pk else [],
        }


class SsoConfiguration(models.Model):
    """The one Okta (OpenID Connect) configuration; always row pk=1 (see `load()`)."""

    enabled = models.BooleanField(default=False)
    display_name = models.CharField(max_length=50, default="Okta")
    issuer = models.URLField(
        "issuer URL",
        blank=True,
        help_text="For Okta: https://<org>.okta.com/oauth2/default (discovery is used).",
    )
    client_id = models.CharField(max_length=200, blank=True)
    client_secret = EncryptedTextField(blank=True)
    scopes = models.CharField(
        max_length=200,
        default="openid profile email groups",
        help_text="Space-separated. The portal maps groups from the “groups” claim, which Okta "
        "sends for the “groups” scope; while groups are mapped, a login without that claim "
        "is refused.",
    )
    local_login_disabled = models.BooleanField(
        "disable local password login",
        default=False,
        help_text="Only the break-glass administrators below may still log in with a password.",
    )
    break_glass_usernames = models.CharField(
        "break-glass admin usernames",
        max_length=300,
        blank=True,
        help_text="Comma-separated usernames that may always log in with a password.",
    )
    updated = models.DateTimeField(auto_now=True)

    objects = restricted_manager(Area.USERS)

    class Meta:
        verbose_name = "SSO configuration"

    def __str__(self) -> str:
        return f"{self.display_name} SSO"

    def get_absolute_url(self) -> str:
        return reverse("portal:sso_settings")

    @classmethod
    def load(cls) -> "SsoConfiguration":
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    @property
    def is_usable(self) -> bool:
        return bool(self.enabled and self.issuer and self.client_id)

    def break_glass(self) -> set[str]:
        return {n.strip().lower() for n in self.break_glass_usernames.split(",") if n.strip()}


class SsoGroupMapping(models.Model):
    """Members of this Okta group (the `groups` claim) become members of this portal group."""

    sso_group = models.CharField("Okta group", max_length=200)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="sso_mappings")

    objects = restricted_manager(Area.USERS)

    class Meta:
        ordering = ["sso_group", "team__name"]
        verbose_name = "SSO group mapping"
        constraints = [
            models.UniqueConstraint(fields=["sso_group", "team"], name="unique_sso_group_team")
        ]

    def __str__(self) -> str:
        return f"{self.sso_group} → {self.team}"

    def get_absolute_url(self) -> str:
        return reverse("portal:sso_settings")


class SsoMembership(models.Model):
    """A group membership that exists because of an SSO mapping (not added by hand).

    The SSO login sets these to exactly the mapped groups; manual memberships are never touched.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_memberships"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="sso_memberships")
    granted = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="unique_sso_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} (SSO)"


# -- notifications (issue 16) ------------------------------------------------------------


class NotificationKind(models.TextChoices):
    WORKSPACE_READY = "workspace_ready", "A workspace I requested is ready"
    WORKSPACE_FAILED = "workspace_failed", "A workspace of mine failed"
    WORKSPACE_DEGRADED = "workspace_degraded", "A workspace of mine is degraded"
    IDLE_WARNING = "idle_warning", "A workspace of mine is idle and about to be stopped"
    IDLE_STOPPED = "idle_stopped", "A workspace of mine was stopped for being idle"
    EXPIRY_WARNING = "expiry_warning", "A workspace of mine is about to expire"
    POOL_HALTED = "pool_halted", "A warm pool halted after repeated failures (administrators)"
    INFRASTRUCTURE_UNREACHABLE = (
        "infrastructure_unreachable",
        "An infrastructure entry is unreachable (administrators)",
    )


class Notification(models.Model):
    """One message to one user about one occurrence (`key`), in the portal and by email.

    The unique (user, key) is what makes sending idempotent: a task delivered twice, or two
    workers noticing the same thing, insert one row, and only the insert sends the email.
    A row is kept even when the user wants neither channel for its kind, as the record that
    the occurrence was handled.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=40, choices=NotificationKind.choices)
    key = models.CharField(max_length=200, help_text="What it is about, and which occurrence.")
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=300, blank=True, help_text="A path in the portal.")
    created = models.DateTimeField(default=timezone.now, db_index=True)
    in_portal = models.BooleanField(default=True)
    email_wanted = models.BooleanField(default=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            # Key first: the engine asks "was this occurrence told?" by key alone.
            models.UniqueConstraint(fields=["key", "user"], name="one_notification_per_occurrence")
        ]
        indexes = [
            models.Index(fields=["user", "in_portal", "read_at"], name="notification_unread")
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.subject}"


class NotificationPreference(models.Model):
    """A user's choice for one kind; without a row, a kind comes by email and in the portal."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    kind = models.CharField(max_length=40, choices=NotificationKind.choices)
    email = models.BooleanField(default=True)
    in_portal = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind"], name="one_preference_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.kind}"
