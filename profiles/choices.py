from django.db import models


class InfrastructureKind(models.TextChoices):
    PUBLIC_CLOUD = "public_cloud", "Public cloud"
    DATA_CENTER = "data_center", "Data center"
    KUBERNETES = "kubernetes", "Existing Kubernetes cluster"
    LOCAL = "local", "Local (this machine)"


class AllocationStrategy(models.TextChoices):
    ON_DEMAND = "on_demand", "On demand"
    WARM_POOL = "warm_pool", "Warm pool"
