from django import template

from portal.models import SsoConfiguration

register = template.Library()


@register.simple_tag
def sso_configuration() -> SsoConfiguration | None:
    """The SSO configuration when SSO is on (for the login page's "Log in with Okta")."""
    config = SsoConfiguration.objects.filter(pk=1).first()
    return config if config and config.is_usable else None
