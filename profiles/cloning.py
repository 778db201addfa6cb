"""Cloning a services profile: the one function the clone page and the API both call."""

from django.db import transaction
from django.utils.text import slugify

from portal import audit
from profiles.models import ServicesProfile


@transaction.atomic
def clone_services_profile(actor, original: ServicesProfile) -> ServicesProfile:
    """An unpublished copy with the same components in the same order, audited.

    Turnkey profiles are read-only; cloning one is how an administrator customises it.
    """
    clone = ServicesProfile.objects.create(
        name=_unique_name(f"{original.name} (copy)"),
        description=original.description,
        published=False,
    )
    for item in original.components.all():
        clone.components.create(
            position=item.position,
            capability=item.capability,
            component=item.component,
            version=item.version,
            parameters=item.parameters,
        )
    audit.record_created(actor, clone)
    return clone


def _unique_name(base: str) -> str:
    name, number = base, 2
    while (
        ServicesProfile.objects.filter(name=name).exists()
        or ServicesProfile.objects.filter(slug=slugify(name)).exists()
    ):
        name, number = f"{base} {number}", number + 1
    return name
