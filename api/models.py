"""Personal API tokens: a name, a scope, an expiry; only the secret's SHA-256 is stored."""

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from portal.roles import Area, has_perm


class Scope(models.TextChoices):
    READ = "read", "Read only"
    READ_WRITE = "read_write", "Read and write"


class SecretHashField(models.CharField):
    """The audit trail records "(set)" for it, never the hash (`portal.audit.snapshot`)."""

    is_secret = True


class ApiTokenQuerySet(models.QuerySet):
    def for_user(self, user, action: str):
        """Everyone's tokens for those who manage users (Org admins), else one's own."""
        if has_perm(user, Area.USERS, action):
            return self
        if not user.is_authenticated:
            return self.none()
        return self.filter(user=user)

    def live(self):
        return self.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The public half of the token ("gpp_<prefix>_<secret>"): finds the row without the secret.
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = SecretHashField(max_length=64)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def get_absolute_url(self) -> str:
        return reverse("api:token_list")

    @property
    def expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "Revoked"
        return "Expired" if self.expired else "Active"
