from django.apps import AppConfig


class UsageConfig(AppConfig):
    """The usage ledger (derived from lifecycle events), prices and showback (issue 16)."""

    name = "usage"
