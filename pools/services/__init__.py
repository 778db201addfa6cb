"""Services profiles realised on the infrastructure drivers (issue 7).

- `base`: the small interface (`ComponentContext` in, `ComponentResult` out) each driver's
  services backend implements: deploy one component, check it, remove it, remove all.
- `local`: components as supervised processes in the workspace's directory and environment.
- `k8s`: components as Kubernetes manifests in the workspace's namespace, with its labels.
- `jobrunner`: the jobs queue the local driver runs (standard library only).
- `tasks`: the django-q2 tasks that move deployments through their lifecycle.
"""
