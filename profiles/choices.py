from django.db import models


class InfrastructureKind(models.TextChoices):
    PUBLIC_CLOUD = "public_cloud", "Public cloud"
    DATA_CENTER = "data_center", "Data center"
    KUBERNETES = "kubernetes", "Existing Kubernetes cluster"
    LOCAL = "local", "Local (this machine)"


class AllocationStrategy(models.TextChoices):
    ON_DEMAND = "on_demand", "On demand"
    WARM_POOL = "warm_pool", "Warm pool"


class PartitioningMode(models.TextChoices):
    WHOLE = "whole", "Whole GPUs (MIG disabled)"
    NAMED = "named", "A named layout"
    CUSTOM = "custom", "A custom mix"


class MigConfigState(models.TextChoices):
    """`nvidia.com/mig.config.state` as mig-manager sets it, plus the portal's own states."""

    NOT_APPLIED = "", "Not applied"
    REFUSED = "refused", "Refused (workspaces on the node)"
    PENDING = "pending", "Pending"
    REBOOTING = "rebooting", "Rebooting"
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"


class HealthStatus(models.TextChoices):
    """What the engine's latest check of an infrastructure entry found (`pools.health`)."""

    UNCHECKED = "", "Not checked yet"
    READY = "ready", "Ready"
    DEGRADED = "degraded", "Degraded"
    UNREACHABLE = "unreachable", "Unreachable"
    CONFIGURATION_ONLY = "configuration_only", "Configuration only"
