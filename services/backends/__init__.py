"""How each kind of infrastructure runs a services profile's components.

- `base`: the small interface (`ComponentContext` in, `ComponentResult` out) each driver's
  services backend implements: deploy one component, check it, remove it, remove all.
- `local`: components as supervised processes in the workspace's directory and environment.
- `kubernetes`: components as Kubernetes manifests in the workspace's namespace, with its labels.
- `ports`: local ports reserved for components' processes besides their own.
- `by_driver`: `backend_for(infrastructure)`, the backend of its driver.

This package imports none of them, so `services.models`, which needs `base`'s statuses,
loads without the backends (`ports` reads `services.models`).
"""
