import hashlib
import json

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from portal.crypto import EncryptedJSONField, EncryptedTextField
from portal.querysets import RestrictedQuerySet, restricted_manager
from portal.roles import CHANGE, ROLE_PERMISSIONS, USE, Area, has_perm
from profiles import catalog
from profiles.choices import (
    AllocationStrategy,
    HealthStatus,
    InfrastructureKind,
    PartitioningMode,
)
from profiles.mig import catalog as mig_catalog
from profiles.mig.nvml import inventory
from services import components


class Infrastructure(models.Model):
    """Where workspaces run: a public cloud account, a data center, a cluster, or this host."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=InfrastructureKind.choices)

    # Public cloud
    provider = models.CharField(max_length=10, blank=True)
    region = models.CharField(max_length=40, blank=True)
    credentials = EncryptedJSONField(blank=True, default=dict)

    # Public cloud, data center and existing cluster
    kubernetes_version = models.CharField(max_length=10, blank=True)

    # Data center
    platform = models.CharField(max_length=20, blank=True)
    endpoint = models.URLField(blank=True)
    hosts = models.TextField(blank=True, help_text="One host name or IP address per line.")
    username = models.CharField(max_length=100, blank=True)
    password = EncryptedTextField(blank=True)
    ssh_private_key = EncryptedTextField(blank=True)
    operating_system = models.CharField(max_length=30, blank=True)

    # Data center and existing cluster: the shape of a GPU node
    gpu_model = models.CharField(max_length=20, blank=True)
    gpus_per_node = models.PositiveSmallIntegerField(default=0)

    # Existing cluster: a kubeconfig with inline credentials (`profiles.kubeconfig`), or the
    # portal pod's own service account when the portal runs in the cluster it manages.
    kubeconfig = EncryptedTextField(blank=True)
    in_cluster = models.BooleanField(
        "Use the portal's service account",
        default=False,
        help_text="The portal runs in a pod of this cluster: it uses the pod's service "
        "account token and RBAC instead of a kubeconfig.",
    )

    # This machine: where workspaces cannot be isolated (`local_isolation`), whether an Org
    # admin lets everyone use it anyway.
    single_user_host = models.BooleanField(
        "Single-user host",
        default=False,
        help_text="Offer this machine to every user although its workspaces are not isolated "
        "from the portal and from each other. Only Org admins may set this.",
    )

    # Health: what the engine's latest check found (`pools.health`, on save and every few
    # minutes). Written by that check, and reset by a save that changes what it checked;
    # never by a form.
    health_status = models.CharField(
        "status",
        max_length=20,
        choices=HealthStatus.choices,
        default=HealthStatus.UNCHECKED,
        blank=True,
        editable=False,
    )
    health_reason = models.TextField("status reason", blank=True, editable=False)
    health_checked_at = models.DateTimeField("last checked", null=True, blank=True, editable=False)
    # When a check was last asked for (a save, "Check now"); pending while newer than the
    # last check.
    health_requested_at = models.DateTimeField(null=True, blank=True, editable=False)

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = restricted_manager(Area.INFRASTRUCTURE)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "infrastructure"
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(kind=InfrastructureKind.LOCAL),
                name="one_local_infrastructure",
                violation_error_message="There is already a local infrastructure entry.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("profiles:infrastructure_detail", args=[self.pk])

    @property
    def provider_label(self) -> str:
        found = catalog.PROVIDERS.get(self.provider)
        return found.name if found else ""

    @property
    def operating_system_label(self) -> str:
        """The operating system's name ("Ubuntu 24.04 LTS"), not its code."""
        return catalog.OPERATING_SYSTEMS.get(self.operating_system, self.operating_system)

    @property
    def gpu_model_label(self) -> str:
        found = catalog.gpu_model(self.gpu_model)
        return found.name if found else self.gpu_model

    @property
    def location(self) -> str:
        """A one-line answer to "where is it" for tables."""
        if self.kind == InfrastructureKind.PUBLIC_CLOUD:
            return f"{self.provider.upper()} {self.region}"
        if self.kind == InfrastructureKind.DATA_CENTER:
            label = catalog.DATA_CENTER_PLATFORMS.get(self.platform)
            return label.name if label else self.platform
        if self.kind == InfrastructureKind.KUBERNETES:
            return "in-cluster" if self.in_cluster else "kubeconfig"
        return "this machine"

    def host_list(self) -> list[str]:
        return [line.strip() for line in self.hosts.splitlines() if line.strip()]

    @property
    def provisionable(self) -> bool:
        """Whether a driver can provision on this kind of entry at all (`catalog.PROVISIONABLE`)."""
        return catalog.can_provision(self.kind, self.provider)

    def usability(self) -> tuple[bool, str]:
        """Whether the entry's own settings are complete enough to provision with, and if
        not, what is missing. Reads no network: `availability()` adds whether a driver
        provisions on this kind at all and what the latest check found."""
        if self.kind == InfrastructureKind.PUBLIC_CLOUD and not self._has_login():
            return False, "No credentials: add them before workspaces can be provisioned here."
        if self.kind == InfrastructureKind.KUBERNETES and not (self.kubeconfig or self.in_cluster):
            return False, "No kubeconfig: add one before workspaces can be provisioned here."
        if self.kind == InfrastructureKind.DATA_CENTER and not (
            self.ssh_private_key or self.password
        ):
            return False, "No credentials: add an SSH key or password."
        return True, ""

    def _has_login(self) -> bool:
        """Public cloud: a complete set of login credentials (the EKS settings stored beside
        them are no login)."""
        if not self.credentials:
            return False
        if self.provider not in catalog.PROVIDERS:
            return True  # nothing to compare with; no driver provisions there anyway
        return not catalog.missing_credentials(self.provider, self.credentials)

    def availability(self) -> tuple[bool, str]:
        """Whether workspaces can be provisioned here now: its settings allow it
        (`usability`) and its latest health check found it Ready. What the self-service
        page, the request and the warm-pool loop ask before they offer or create anything."""
        if not self.provisionable:
            return False, (
                f"Configuration only: the portal cannot provision on {self.kind_label} yet."
            )
        usable, reason = self.usability()
        if not usable:
            return usable, reason
        if self.health_status == HealthStatus.READY:
            return True, ""
        return False, self.health_summary

    def holds_resources(self) -> bool:
        """Whether anything on it may still hold resources there: a workspace, a warm-pool
        instance or a services stack (each model's `in_use()`; the engine's models, found
        by their links here, since the catalog does not import the engine)."""
        for relation in self._meta.related_objects:
            model = relation.related_model
            if hasattr(model, "in_use"):
                related = model.objects.filter(**{relation.field.name: self})
                if related.filter(model.in_use()).exists():
                    return True
        return False

    def audit_snapshot(self) -> dict:
        """The enabled instance types by name: the form replaces those rows, so a change
        of only them would otherwise leave no trace. Read afresh, never from a prefetch."""
        if not self.pk:
            return {}
        return {"instance_types": sorted(self.instance_types.values_list("name", flat=True))}

    @property
    def kind_label(self) -> str:
        """What the entry is, by name: "Microsoft Azure", "VMware vSphere", "This machine"…"""
        if self.kind == InfrastructureKind.PUBLIC_CLOUD:
            return self.provider_label or self.provider or self.get_kind_display()
        if self.kind == InfrastructureKind.DATA_CENTER:
            platform = catalog.DATA_CENTER_PLATFORMS.get(self.platform)
            return platform.name if platform else self.get_kind_display()
        return self.get_kind_display()

    @property
    def health_summary(self) -> str:
        """The status in a sentence, e.g. "Unreachable: Cannot reach the Kubernetes API …"."""
        if self.health_status == HealthStatus.UNCHECKED:
            return "Not checked yet: the portal is checking this infrastructure."
        label = self.get_health_status_display()
        return f"{label}: {self.health_reason}" if self.health_reason else label

    @property
    def health_pending(self) -> bool:
        """A check was asked for and has not reported yet."""
        requested, checked = self.health_requested_at, self.health_checked_at
        return requested is not None and (checked is None or checked < requested)

    def request_health_check(self, reset: bool = False) -> None:
        """Ask the engine to check this entry, once the current transaction commits.

        `reset`: what was checked no longer describes the entry (its connection settings
        changed), so it is "not checked yet", and not offered, until the new check lands.
        The check itself never runs here, in a web request: a cluster that does not answer
        would hold the request for as long as its timeouts.
        """
        fields: dict = {"health_requested_at": timezone.now()}
        if reset:
            fields |= {"health_status": HealthStatus.UNCHECKED, "health_reason": ""}
        # An UPDATE of these columns only: the instance (and so the audit entry of the save
        # that asked) keeps what the administrator changed.
        Infrastructure.objects.filter(pk=self.pk).update(**fields)
        pk = self.pk
        transaction.on_commit(lambda: [request(pk) for request in HEALTH_CHECK_REQUESTERS])

    @property
    def admins_only(self) -> bool:
        """Local workspaces that are not isolated are offered only to Org admins, until an
        Org admin marks the machine a single-user host."""
        return (
            self.kind == InfrastructureKind.LOCAL
            and not self.single_user_host
            and not local_isolation()[0]
        )

    @property
    def isolation_status(self) -> str:
        """What the status of this machine says about workspace isolation ("" elsewhere)."""
        if self.kind != InfrastructureKind.LOCAL:
            return ""
        isolated, description = local_isolation()
        if isolated:
            return description
        if self.single_user_host:
            return (
                f"Workspaces are not isolated: {description} An Org admin marked this a "
                "single-user host, so it is offered to every user."
            )
        return (
            f"Workspaces are not isolated: {description} Offered only to Org admins until "
            "an Org admin marks this a single-user host."
        )

    def gpu_offer(self) -> dict[str, int]:
        """GPU model code → the most GPUs of that model one node offers here."""
        if self.kind == InfrastructureKind.PUBLIC_CLOUD:
            offer: dict[str, int] = {}
            for itype in self.instance_types.all():
                if itype.gpu_model:
                    offer[itype.gpu_model] = max(offer.get(itype.gpu_model, 0), itype.gpu_count)
            return offer
        if self.kind == InfrastructureKind.LOCAL:
            return local_gpu_offer()
        if self.gpu_model and self.gpus_per_node:
            return {self.gpu_model: self.gpus_per_node}
        return {}


# What runs a health check of an infrastructure entry soon, given its id. The engine
# registers, in its AppConfig.ready, a function that enqueues one (`pools.health.enqueue`).
HEALTH_CHECK_REQUESTERS: list = []


# How this host isolates local workspaces. The engine registers, in its AppConfig.ready, a
# function returning (isolated, description) (`pools.cgroups.describe_host`).
LOCAL_ISOLATION_PROBES: list = []


def local_isolation() -> tuple[bool, str]:
    """Whether workspaces on this machine are isolated from the portal and each other."""
    for probe in LOCAL_ISOLATION_PROBES:
        return probe()
    return False, "Nothing has checked whether this machine can isolate workspaces."


def local_gpu_offer() -> dict[str, int]:
    """This host's GPUs by catalog model code, from NVML (empty on a CPU-only host)."""

    offer: dict[str, int] = {}
    for gpu in inventory().gpus:
        if gpu.gpu_model:
            offer[gpu.gpu_model] = offer.get(gpu.gpu_model, 0) + 1
    return offer


class InstanceType(models.Model):
    """A cloud instance type enabled on a public-cloud infrastructure, with its facts."""

    infrastructure = models.ForeignKey(
        Infrastructure, on_delete=models.CASCADE, related_name="instance_types"
    )
    name = models.CharField(max_length=60)
    gpu_model = models.CharField(max_length=20, blank=True)
    gpu_count = models.PositiveSmallIntegerField(default=0)
    gpu_memory_gb = models.PositiveIntegerField(default=0)
    vcpu = models.PositiveIntegerField(default=0)
    ram_gb = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["gpu_model", "gpu_count", "name"]
        constraints = [
            models.UniqueConstraint(fields=["infrastructure", "name"], name="unique_instance_type")
        ]

    def __str__(self) -> str:
        if self.gpu_count:
            return f"{self.name} ({self.gpu_count}× {self.gpu_model})"
        return f"{self.name} (CPU only)"


# The roles whose groups use profiles themselves: only their access lists grant a profile
# (a Viewer group's list grants nothing), and only they carry quotas (`workspaces.quotas`).
SELF_SERVICE_ROLES = [
    role for role, perms in ROLE_PERMISSIONS.items() if (Area.SELF_SERVICE, USE) in perms
]


PROFILE_SLUG_LENGTH = 100


def profile_slug(name: str) -> str:
    """A compute or services profile's identifier, made from its name when it is saved:
    what drivers and pages name it by (unique per kind)."""
    return slugify(name)[:PROFILE_SLUG_LENGTH]


class UsableProfileQuerySet(RestrictedQuerySet):
    """Adds "which published profiles may this end user use" to the admin filter."""

    def usable_by(self, user):
        if not has_perm(user, Area.SELF_SERVICE, USE):
            return self.none()
        open_to_all = models.Q(teams__isnull=True)
        # One condition on the same group: the user is in it and its role is self-service.
        granted = models.Q(teams__members=user, teams__role__in=SELF_SERVICE_ROLES)
        return self.filter(published=True).filter(open_to_all | granted).distinct()


def provisionable_q(prefix: str = "") -> models.Q:
    """Infrastructure (under `prefix`, e.g. "infrastructure__") a driver can provision on."""
    q = models.Q()
    for kind, provider in sorted(catalog.PROVISIONABLE):
        match = {f"{prefix}kind": kind}
        if kind == InfrastructureKind.PUBLIC_CLOUD:
            match[f"{prefix}provider"] = provider
        q |= models.Q(**match)
    return q


class OfferedProfileQuerySet(UsableProfileQuerySet):
    """Compute profiles as offered: a machine that cannot isolate workspaces is offered only
    to Org admins until one marks it a single-user host (`Infrastructure.admins_only`)."""

    def usable_by(self, user):
        # Where no driver can provision, a profile is never offered.
        offered = super().usable_by(user).filter(provisionable_q("infrastructure__"))
        if has_perm(user, Area.USERS, CHANGE) or local_isolation()[0]:
            return offered
        return offered.exclude(
            infrastructure__kind=InfrastructureKind.LOCAL,
            infrastructure__single_user_host=False,
        )


# The most instances one warm pool keeps (a profile's or a schedule's desired capacity, an
# SLO-sized pool's maximum): the loop creates at most this many in one pass.
MAX_POOL_SIZE = 100


def at_most(limit: int, what: str) -> MaxValueValidator:
    """A maximum with a message that says what the limit is of."""
    return MaxValueValidator(limit, f"Give at most {limit:,} {what}.")


def pool_size_validator() -> MaxValueValidator:
    return at_most(MAX_POOL_SIZE, "instances: a bigger warm pool is not supported")


class ComputeProfile(models.Model):
    """A published "organisational standard" of resources that users request as workspaces."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=PROFILE_SLUG_LENGTH, unique=True)
    description = models.TextField(blank=True)
    infrastructure = models.ForeignKey(
        Infrastructure, on_delete=models.PROTECT, related_name="compute_profiles"
    )
    published = models.BooleanField(
        default=False, help_text="Only published profiles are offered to end users."
    )
    allocation_strategy = models.CharField(
        max_length=20, choices=AllocationStrategy.choices, default=AllocationStrategy.ON_DEMAND
    )
    desired_capacity = models.PositiveIntegerField(
        default=0,
        validators=[pool_size_validator()],
        help_text="Ready instances the warm pool keeps. On-demand profiles keep 0.",
    )
    super_sized = models.BooleanField(
        default=False,
        help_text="Too big for a node group: a warm instance is a dedicated cluster.",
    )
    default_services_profile = models.ForeignKey(
        "ServicesProfile",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="default_for",
        help_text="Deployed into every new workspace (and warm-pool instance) of this profile.",
    )
    # Bumped whenever the resources change, so warm instances of an older shape are replaced.
    version = models.PositiveIntegerField(default=1)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = restricted_manager(Area.PROFILES, OfferedProfileQuerySet)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = profile_slug(self.name)
        if self.allocation_strategy == AllocationStrategy.ON_DEMAND:
            self.desired_capacity = 0
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("profiles:computeprofile_detail", args=[self.pk])

    def clean(self):
        warm = self.allocation_strategy == AllocationStrategy.WARM_POOL
        if warm and self.desired_capacity < 1:
            raise ValidationError(
                {"desired_capacity": "A warm pool needs a desired capacity of at least 1."}
            )
        if not warm and self.desired_capacity:
            raise ValidationError(
                {
                    "desired_capacity": "On-demand profiles keep no warm instances; "
                    "choose “Warm pool” or set 0."
                }
            )

    @property
    def is_heterogeneous(self) -> bool:
        return len({group.gpu_model for group in self.resource_groups.all()}) > 1

    def totals(self) -> dict[str, int]:
        """What one workspace of the profile holds, every node counted: a group's counts
        are per node, as the drivers run them (`node_count` pods or machines, each with
        `gpu_count` GPUs, its CPUs, memory and storage). The quotas charge this."""
        groups = self.resource_groups.all()
        return {
            "gpus": sum(g.gpu_count * g.node_count for g in groups if not g.mig_profile),
            "mig_slices": sum(g.gpu_count * g.node_count for g in groups if g.mig_profile),
            "cpu": sum(g.cpu * g.node_count for g in groups),
            "ram_gb": sum(g.ram_gb * g.node_count for g in groups),
            "storage_gb": sum(g.storage_gb * g.node_count for g in groups),
        }

    def audit_snapshot(self) -> dict:
        if not self.pk:
            return {}
        return {"resource_groups": [g.as_dict() for g in self.resource_groups.all()]}


# Maxima of a resource group: beyond any real machine, and small enough that the usage
# ledger's per-group products (GPUs x nodes, storage x nodes) fit its 32-bit fields.
MAX_GPU_COUNT = 512  # whole GPUs or MIG slices: e.g. 8 nodes of 8 GPUs in 7 slices each
MAX_CPU = 1024  # vCPUs
MAX_RAM_GB = 65_536
MAX_STORAGE_GB = 1_000_000
MAX_NODE_COUNT = 1000


class ResourceGroup(models.Model):
    """One homogeneous set of resources of a compute profile (key-value pairs)."""

    profile = models.ForeignKey(
        ComputeProfile, on_delete=models.CASCADE, related_name="resource_groups"
    )
    position = models.PositiveSmallIntegerField(default=0)
    gpu_model = models.CharField("GPU model", max_length=20, blank=True)
    gpu_count = models.PositiveIntegerField(
        "GPU count",
        default=0,
        validators=[at_most(MAX_GPU_COUNT, "GPUs or MIG slices in one group")],
        help_text="Whole GPUs, or MIG slices when a slice profile is set, on each node.",
    )
    mig_profile = models.CharField(
        "MIG slice profile",
        max_length=20,
        blank=True,
        help_text="e.g. 3g.20gb: the group gets slices of a partitioned GPU, not whole GPUs.",
    )
    cpu = models.PositiveIntegerField(
        "CPU", default=1, validators=[at_most(MAX_CPU, "vCPUs")], help_text="vCPUs."
    )
    ram_gb = models.PositiveIntegerField(
        "RAM (GB)", default=4, validators=[at_most(MAX_RAM_GB, "GB of RAM")]
    )
    storage_gb = models.PositiveIntegerField(
        "Storage (GB)", default=10, validators=[at_most(MAX_STORAGE_GB, "GB of storage")]
    )
    node_count = models.PositiveIntegerField(
        default=1, validators=[at_most(MAX_NODE_COUNT, "nodes in one group")]
    )
    instance_type = models.CharField(max_length=60, blank=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.profile}: {self.summary}"

    @property
    def summary(self) -> str:
        if self.mig_profile:
            gpus = f"{self.gpu_count}× {self.gpu_model} MIG {self.mig_profile}"
        elif self.gpu_count:
            gpus = f"{self.gpu_count}× {self.gpu_model}"
        else:
            gpus = "no GPU"
        nodes = f", {self.node_count} nodes" if self.node_count > 1 else ""
        return f"{gpus}, {self.cpu} CPU, {self.ram_gb} GB RAM, {self.storage_gb} GB storage{nodes}"

    def as_dict(self) -> dict:
        return {
            "gpu_model": self.gpu_model,
            "gpu_count": self.gpu_count,
            "mig_profile": self.mig_profile,
            "cpu": self.cpu,
            "ram_gb": self.ram_gb,
            "storage_gb": self.storage_gb,
            "node_count": self.node_count,
            "instance_type": self.instance_type,
        }


class ServicesProfile(models.Model):
    """A one-click software stack users deploy into a workspace."""

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=PROFILE_SLUG_LENGTH, unique=True)
    description = models.TextField(blank=True)
    turnkey = models.BooleanField(
        default=False, editable=False, help_text="Shipped with the product; clone to customise."
    )
    published = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = restricted_manager(Area.PROFILES, UsableProfileQuerySet)

    class Meta:
        ordering = ["-turnkey", "name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.slug:
            self.slug = profile_slug(self.name)
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("profiles:servicesprofile_detail", args=[self.pk])

    def audit_snapshot(self) -> dict:
        if not self.pk:
            return {}
        return {
            "components": [c.as_dict() for c in self.components.all()],
            "teams": sorted(self.teams.values_list("name", flat=True)),
        }


class ServiceComponent(models.Model):
    """One capability of a services profile and the component that provides it."""

    profile = models.ForeignKey(
        ServicesProfile, on_delete=models.CASCADE, related_name="components"
    )
    position = models.PositiveSmallIntegerField(default=0)
    capability = models.CharField(max_length=30, choices=components.Capability.choices)
    component = models.CharField(max_length=40, choices=components.choices())
    version = models.CharField(max_length=40, blank=True)
    parameters = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.get_capability_display()}: {self.get_component_display()} {self.version}"

    def as_dict(self) -> dict:
        return {
            "capability": self.capability,
            "component": self.component,
            "version": self.version,
            "parameters": self.parameters,
        }


DEFAULT_MIG_CONFIG_MAP = "custom-mig-parted-config"
DEFAULT_MIG_CONFIG_NAMESPACE = "gpu-operator"


class PartitioningStrategy(models.Model):
    """How the GPUs of one model on one infrastructure are partitioned with MIG.

    Whole GPUs (MIG disabled), one of mig-parted's named layouts, or a custom mix of
    profiles, on every node with that GPU model or on the listed nodes. Compute profiles
    may only ask for MIG slices that a partitioning provides.
    """

    infrastructure = models.ForeignKey(
        Infrastructure, on_delete=models.CASCADE, related_name="partitionings"
    )
    gpu_model = models.CharField("GPU model", max_length=20)
    mode = models.CharField(
        max_length=10, choices=PartitioningMode.choices, default=PartitioningMode.WHOLE
    )
    layout_name = models.CharField(
        "named layout", max_length=40, blank=True, help_text="A layout mig-parted ships."
    )
    custom_counts = models.JSONField(
        default=dict, blank=True, help_text="MIG profile → instances on each GPU."
    )
    nodes = models.TextField(
        blank=True,
        help_text="One node name per line; leave empty for every node with this GPU model.",
    )
    config_map_name = models.CharField(
        "ConfigMap", max_length=253, default=DEFAULT_MIG_CONFIG_MAP,
        help_text="The GPU Operator's custom mig-parted ConfigMap (migManager.config.name).",
    )  # fmt: skip
    config_map_namespace = models.CharField(
        "namespace", max_length=63, default=DEFAULT_MIG_CONFIG_NAMESPACE
    )
    apply_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    applied_config = models.CharField(max_length=63, blank=True, editable=False)
    apply_error = models.TextField(blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = restricted_manager(Area.PROFILES)

    class Meta:
        ordering = ["infrastructure__name", "gpu_model"]
        verbose_name = "partitioning strategy"
        verbose_name_plural = "partitioning strategies"
        constraints = [
            models.UniqueConstraint(
                fields=["infrastructure", "gpu_model"],
                name="one_partitioning_per_infrastructure_and_gpu_model",
                violation_error_message="This infrastructure already has a partitioning for "
                "this GPU model; edit that one.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.infrastructure} · {self.gpu_model}"

    def get_absolute_url(self) -> str:
        return reverse("profiles:partitioningstrategy_detail", args=[self.pk])

    def node_list(self) -> list[str]:
        return [line.strip() for line in self.nodes.splitlines() if line.strip()]

    def per_gpu_counts(self) -> dict[str, int] | None:
        """Profile → instances on each GPU; None for whole GPUs (MIG disabled)."""

        if self.mode == PartitioningMode.CUSTOM:
            return {name: n for name, n in (self.custom_counts or {}).items() if n}
        if self.mode == PartitioningMode.NAMED:
            named = mig_catalog.named_layouts(self.gpu_model).get(self.layout_name)
            if named is None or not named.mig_enabled:
                return None
            return dict(named.mig_devices)
        return None

    def config_name(self) -> str:
        """The mig-parted config the nodes are labelled with (nvidia.com/mig.config).

        A custom mix is named after its content, so an edit gives a new label value and
        mig-manager, which acts on label changes, repartitions.
        """
        if self.mode == PartitioningMode.NAMED:
            return self.layout_name
        if self.mode == PartitioningMode.CUSTOM:
            counts = json.dumps(self.per_gpu_counts(), sort_keys=True)
            digest = hashlib.sha256(counts.encode()).hexdigest()[:8]
            return f"portal-{slugify(self.gpu_model)}-{digest}"
        return "all-disabled"

    def audit_snapshot(self) -> dict:
        if not self.pk:
            return {}
        return {"draining": sorted(n.name for n in self.node_states.all() if n.draining)}
