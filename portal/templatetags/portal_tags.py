from django import template

register = template.Library()


@register.filter
def model_url(obj, suffix: str) -> str:
    """The URL name of an object's standard page, e.g. `profiles:computeprofile_edit`."""
    meta = obj._meta
    return f"{meta.app_label}:{meta.model_name}_{suffix}"
