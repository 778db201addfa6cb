from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        # Connect the django-q2 signal receivers that carry log context into tasks.
        from portal import tasklog  # noqa: F401
