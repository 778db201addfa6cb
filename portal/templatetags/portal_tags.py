from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil

register = template.Library()


@register.filter
def model_url(obj, suffix: str) -> str:
    """The URL name of an object's standard page, e.g. `profiles:computeprofile_edit`."""
    meta = obj._meta
    return f"{meta.app_label}:{meta.model_name}_{suffix}"


@register.filter
def when(value):
    """A time in the organisation's time zone (settings.TIME_ZONE, PORTAL_TIME_ZONE) with a
    relative hint: "Mon 30 Nov 14:05 (3 minutes ago)", machine-readable in `<time>`."""
    if not value:
        return "—"
    local = timezone.localtime(value)
    now = timezone.now()
    hint = f"in {timeuntil(value, now)}" if value > now else f"{timesince(value, now)} ago"
    return format_html(
        '<time datetime="{}" title="{}">{}</time> <span class="muted">({})</span>',
        local.isoformat(),
        date_format(local, "Y-m-d H:i:s T"),
        date_format(local, "D j M H:i"),
        hint,
    )
