"""The training job runner: the jobs queue on GPUs, in NVIDIA's PyTorch image (torchrun)."""

from __future__ import annotations

from services.components.base import (
    CHOICE,
    INT,
    Capability,
    Parameter,
    resources,
)
from services.components.job_queue import JobQueue


class TrainingRunner(JobQueue):
    code = "training-runner"
    name = "Training job runner"
    capabilities = (Capability.TRAINING,)
    default_version = "1.0"
    description = "Runs distributed PyTorch training (torchrun) on the workspace's GPUs."
    parameters = (
        Parameter("framework", CHOICE, "pytorch", "Training framework.", ("pytorch",)),
        Parameter("max_parallel", INT, 1, "Jobs run at the same time.", (), 1, 16),
        *resources(cpu=4, memory_gb=16, gpus=1),
    )
    min_gpus = 1
    image = "nvcr.io/nvidia/pytorch:25.04-py3"
