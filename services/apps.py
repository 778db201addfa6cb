from django.apps import AppConfig


class ServicesConfig(AppConfig):
    """Services profiles deployed into workspaces: components, deployments, tasks, pages."""

    name = "services"
