"""NVIDIA MIG: the offline catalog, layout validation, fleet placement, mig-parted configs
and NVML discovery. Pure Python; nothing here imports Django."""
