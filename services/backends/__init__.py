"""How each kind of infrastructure runs a services profile's components.

- `base`: the small interface (`ComponentContext` in, `ComponentResult` out) each driver's
  services backend implements: deploy one component, check it, remove it, remove all.
- `local`: components as supervised processes in the workspace's directory and environment.
- `kubernetes`: components as Kubernetes manifests in the workspace's namespace, with its labels.
"""

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
