from django.db import models


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
