from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from allauth.socialaccount.models import SocialAccount

        # tasklog: connect the django-q2 signal receivers that carry log context into tasks.
        from portal import sso, tasklog  # noqa: F401

        # Audit every Okta account linked to (or unlinked from) a local account.
        post_save.connect(sso.record_link, sender=SocialAccount, dispatch_uid="sso-link")
        post_delete.connect(sso.record_unlink, sender=SocialAccount, dispatch_uid="sso-unlink")
