"""What deleting an infrastructure or a compute profile does to the objects that used it.

A workspace, warm-pool instance or service deployment points at its infrastructure (and a
workspace or instance at its compute profile). While it is in use (`in_use()` of its model:
it may still hold resources there), it protects what it points at: the delete is refused
and the delete page lists it. Once it is done (deleted, or a claimed instance whose
workspace is done), it is history: the link is cleared and the name of what it pointed at
is kept in `<field>_name`, so its page, the audit trail and the metrics still say where it
ran. History never blocks a delete.

Used as `on_delete=keep_as_history` on those foreign keys (they must be nullable, and the
model must have a `<field>_name` CharField and an `in_use()` classmethod returning a Q).
"""

from django.db.models import ProtectedError


def keep_as_history(collector, field, sub_objs, using) -> None:
    """`on_delete`: refuse while a referring object is in use; else keep the name, unlink.

    1. The referring objects still in use: raise ProtectedError with them (the delete page
       lists them; the ORM refuses the delete).
    2. For each object being deleted: the referring rows get its name in `<field>_name`
       (by primary key, so the order of the collector's updates does not matter).
    3. The link itself is set to NULL.
    """
    model = field.model
    in_use = list(sub_objs.defer(None).filter(model.in_use()))
    if in_use:
        raise ProtectedError(
            f"Cannot delete: {len(in_use)} {model._meta.verbose_name_plural} still use it "
            f"through {model.__name__}.{field.name}.",
            in_use,
        )
    name_field = model._meta.get_field(f"{field.name}_name")
    targets = field.related_model._base_manager.using(using).in_bulk(
        set(sub_objs.values_list(field.attname, flat=True))
    )
    for pk, target in targets.items():
        rows = list(sub_objs.select_related(None).filter(**{field.attname: pk}).only("pk"))
        collector.add_field_update(name_field, str(target)[: name_field.max_length], rows)
    collector.add_field_update(field, None, sub_objs)


# Called even when no row refers to the deleted object, so the queryset is never loaded
# whole: history can be long.
keep_as_history.lazy_sub_objs = True
