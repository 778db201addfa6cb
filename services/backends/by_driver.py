"""The services backend of an infrastructure's driver."""

from pools.drivers import driver_class
from pools.drivers.kubernetes import KubernetesDriver
from pools.drivers.local import LocalDriver
from services.backends.base import ServicesBackend
from services.backends.kubernetes import KubernetesServices
from services.backends.local import LocalServices


def backend_for(infrastructure) -> ServicesBackend | None:
    """The services backend of the infrastructure's driver, or None if it has none."""
    cls = driver_class(infrastructure)
    if cls is not None and issubclass(cls, LocalDriver):
        return LocalServices(infrastructure)
    if cls is not None and issubclass(cls, KubernetesDriver):
        return KubernetesServices(infrastructure)
    return None
