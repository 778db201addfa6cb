"""Cloning a services profile: the one function the clone page and the API both call."""

from django.db import transaction
from django.db.models import Q
from django.utils.text import slugify

from portal import audit
from profiles.models import PROFILE_SLUG_LENGTH, ServicesProfile, profile_slug


@transaction.atomic
def clone_services_profile(actor, original: ServicesProfile) -> ServicesProfile:
    """An unpublished copy with the same components in the same order, audited.

    Turnkey profiles are read-only; cloning one is how an administrator customises it.
    """
    clone = ServicesProfile.objects.create(
        name=_unique_name(original.name),
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


def _unique_name(original: str) -> str:
    """“<original> (copy)”, else “… (copy) 2”, 3, ...: the first whose name and slug are free."""
    number, suffix = 1, " (copy)"
    while True:
        name = _fitting(original, suffix)
        if not ServicesProfile.objects.filter(Q(name=name) | Q(slug=profile_slug(name))).exists():
            return name
        number += 1
        suffix = f" (copy) {number}"


def _fitting(original: str, suffix: str) -> str:
    """`original` + `suffix`, the original cut short so that the name fits its column and its
    slug needs no cut (a cut slug would end the same for every suffix)."""
    name_length = ServicesProfile._meta.get_field("name").max_length
    base = original[: name_length - len(suffix)]
    # slugify can lengthen ("ﬁ" gives "fi"): cut until the slug needs no cut of its own.
    while len(slugify(base + suffix)) > PROFILE_SLUG_LENGTH:
        base = base[:-1]
    return base.rstrip() + suffix
