"""What the API returns: an explicit allow-list of fields per model, so a secret can never
be returned by accident (a new secret field is not listed here). Secrets are write-only:
an object says only which of them are set (`secrets_set`), as the pages do."""

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from pools.models import LoopDecision, PoolSchedule, Workspace, WorkspaceEvent
from portal.models import AuditEntry, Invitation, Team
from portal.team_forms import TeamForm
from profiles.forms.compute import ResourceGroupForm
from profiles.forms.infrastructure import InfrastructureForm
from profiles.models import (
    ComputeProfile,
    Infrastructure,
    PartitioningStrategy,
    ResourceGroup,
    ServiceComponent,
    ServicesProfile,
)
from services.models import ComponentDeployment, ServiceDeployment


def secret_field_names(model) -> list[str]:
    return [f.name for f in model._meta.concrete_fields if getattr(f, "is_secret", False)]


class InfrastructureSerializer(serializers.ModelSerializer):
    secrets_set = serializers.SerializerMethodField()
    usable = serializers.SerializerMethodField()

    class Meta:
        model = Infrastructure
        # What the page's form edits, less its write-only secrets, and what checks record.
        fields = [
            "id",
            *(
                name
                for name in InfrastructureForm.Meta.fields
                if name not in secret_field_names(Infrastructure)
            ),
            "health_status",
            "health_reason",
            "health_checked_at",
            "secrets_set",
            "usable",
            "created",
            "updated",
        ]

    def get_secrets_set(self, obj) -> dict[str, bool]:
        """{"password": true, ...}: which secret fields hold a value, never the value."""
        return {name: bool(getattr(obj, name)) for name in secret_field_names(Infrastructure)}

    def get_usable(self, obj) -> dict[str, str | bool]:
        ok, reason = obj.usability()
        return {"ok": ok, "reason": reason}


class ResourceGroupSerializer(serializers.ModelSerializer):
    class Meta:
        model = ResourceGroup
        # A copy of the row form's list without the foreign key: Django's inline formset
        # appends "profile" to that list in place the first time a profile form is built,
        # which would change the representation, and so the ETag, of an unchanged profile.
        fields = [name for name in ResourceGroupForm.Meta.fields if name != "profile"]


class ComputeProfileSerializer(serializers.ModelSerializer):
    resource_groups = ResourceGroupSerializer(many=True, read_only=True)

    class Meta:
        model = ComputeProfile
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "infrastructure",
            "published",
            "allocation_strategy",
            "desired_capacity",
            "super_sized",
            "default_services_profile",
            "version",
            "resource_groups",
            "created",
            "updated",
        ]


class ServiceComponentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ServiceComponent
        fields = ["capability", "component", "version", "parameters"]


class ServicesProfileSerializer(serializers.ModelSerializer):
    components = ServiceComponentSerializer(many=True, read_only=True)

    class Meta:
        model = ServicesProfile
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "turnkey",
            "published",
            "components",
            "created",
            "updated",
        ]


class PartitioningStrategySerializer(serializers.ModelSerializer):
    class Meta:
        model = PartitioningStrategy
        fields = [
            "id",
            "infrastructure",
            "gpu_model",
            "mode",
            "layout_name",
            "custom_counts",
            "nodes",
            "config_map_name",
            "config_map_namespace",
            "applied_config",
            "apply_error",
            "created",
            "updated",
        ]


class DrainRequestSerializer(serializers.Serializer):
    node = serializers.CharField(help_text="A node of the partitioning.")
    draining = serializers.BooleanField(help_text="true: drain; false: back in service.")


class MemberRequestSerializer(serializers.Serializer):
    user = serializers.IntegerField(help_text="An active user who is not a member yet.")


class LayoutRequestSerializer(serializers.Serializer):
    gpu_model = serializers.CharField(help_text="A MIG-capable GPU model, e.g. A100-40GB.")
    counts = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=64),
        help_text='MIG profile → instances on one GPU, e.g. {"3g.20gb": 2}.',
    )


class PlacementSerializer(serializers.Serializer):
    profile = serializers.CharField()
    start = serializers.IntegerField()
    size = serializers.IntegerField()


class LayoutResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    placements = PlacementSerializer(many=True)


@extend_schema_field({"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$", "example": "08:00"})
class WallClockTimeField(serializers.TimeField):
    """A time of day as the schedule page shows it ("08:00"), in the organisation's time
    zone; OpenAPI's `time` format would demand a UTC offset it does not have."""

    def __init__(self, **kwargs):
        super().__init__(format="%H:%M", **kwargs)


class PoolScheduleSerializer(serializers.ModelSerializer):
    start_time = WallClockTimeField(read_only=True)
    end_time = WallClockTimeField(read_only=True, help_text="00:00 means midnight.")

    class Meta:
        model = PoolSchedule
        fields = [
            "id",
            "profile",
            "name",
            "weekdays",
            "start_time",
            "end_time",
            "desired_capacity",
            "created",
        ]


class LoopDecisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = LoopDecision
        fields = [
            "time",
            "desired",
            "ready",
            "provisioning",
            "deleting",
            "action",
            "count",
            "reason",
        ]


class PoolStatusSerializer(serializers.Serializer):
    """A warm pool as the pools page shows it: the loop's plan for the profile now."""

    profile = serializers.IntegerField(source="decision.profile.pk")
    profile_name = serializers.CharField(source="decision.profile.name")
    desired = serializers.IntegerField(source="decision.desired")
    ready = serializers.IntegerField(source="decision.counts.ready")
    provisioning = serializers.IntegerField(source="decision.counts.in_flight")
    action = serializers.CharField(source="decision.action")
    reason = serializers.CharField(source="decision.reason")
    claimed_recently = serializers.IntegerField(source="claimed")
    paused = serializers.SerializerMethodField()
    halted = serializers.SerializerMethodField()
    last_failure = serializers.SerializerMethodField()

    def get_paused(self, row) -> bool:
        return bool(row["pool"] and row["pool"].paused)

    def get_halted(self, row) -> bool:
        return bool(row["pool"] and row["pool"].halted)

    def get_last_failure(self, row) -> str:
        return row["pool"].last_failure if row["pool"] else ""


class WorkspaceSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    team = serializers.CharField(source="team.name", read_only=True, default=None, allow_null=True)
    profile_name = serializers.CharField(source="profile_label", read_only=True)
    infrastructure_name = serializers.CharField(source="infrastructure_label", read_only=True)
    state_label = serializers.CharField(source="get_state_display", read_only=True)

    class Meta:
        model = Workspace
        fields = [
            "id",
            "name",
            "owner",
            "team",
            "profile",
            "profile_name",
            "infrastructure_name",
            "state",
            "state_label",
            "failure_reason",
            "gpus",
            "mig_slices",
            "connection",
            "created",
            "ready_at",
            "expires_at",
        ]


class WorkspaceRequestSerializer(serializers.Serializer):
    """The body of a workspace request (validated by the page's `WorkspaceRequestForm`)."""

    profile = serializers.IntegerField(help_text="A compute profile you may use.")
    name = serializers.CharField(required=False, allow_blank=True)
    services_profile = serializers.IntegerField(
        required=False, allow_null=True, help_text="A services profile to deploy once ready."
    )


class WorkspaceEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor.get_username", default=None, allow_null=True, read_only=True
    )

    class Meta:
        model = WorkspaceEvent
        fields = ["timestamp", "from_state", "to_state", "message", "actor"]


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(
        allow_blank=True, help_text="Empty once shown, or for anyone but the owner."
    )


class ComponentDeploymentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ComponentDeployment
        fields = ["id", "component", "status", "endpoints"]


class ServiceDeploymentSerializer(serializers.ModelSerializer):
    components = ComponentDeploymentSerializer(many=True, read_only=True)

    class Meta:
        model = ServiceDeployment
        fields = ["id", "profile_name", "state", "components", "created"]


class DeployRequestSerializer(serializers.Serializer):
    services_profile = serializers.IntegerField()


class UserSerializer(serializers.ModelSerializer):
    groups = serializers.SlugRelatedField(
        source="teams", slug_field="name", many=True, read_only=True
    )

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "email", "is_active", "last_login", "date_joined", "groups"]


class TeamSerializer(serializers.ModelSerializer):
    members = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)

    class Meta:
        model = Team
        fields = ["id", *TeamForm.Meta.fields, "members", "created"]


class InvitationSerializer(serializers.ModelSerializer):
    groups = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    invited_by = serializers.CharField(
        source="invited_by.get_username", default=None, allow_null=True, read_only=True
    )

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "groups",
            "invited_by",
            "created",
            "sent_at",
            "expires_at",
            "accepted_at",
            "revoked_at",
        ]


class AuditEntrySerializer(serializers.ModelSerializer):
    type = serializers.CharField(source="content_type.model", read_only=True)

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "timestamp",
            "actor_name",
            "action",
            "message",
            "type",
            "object_id",
            "object_repr",
            "before",
            "after",
            "request_id",
        ]
