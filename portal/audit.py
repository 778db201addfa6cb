"""The audit trail: every change to a catalog object is one AuditEntry row.

Writes call `snapshot()` before the change and `record()` after it, inside the same
transaction, so the trail and the data can never disagree. Secret fields are reduced to
"set"/"not set" (and "changed") so no plaintext or ciphertext reaches the log.
"""

import contextvars
import hashlib
import uuid
from datetime import date, datetime, time
from decimal import Decimal

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from portal.models import AuditAction, AuditEntry

current_request_id: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar(
    "current_request_id", default=None
)

SECRET_SET = "(set)"
SECRET_NOT_SET = "(not set)"


def _json_value(value):
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, models.Model):
        return str(value)
    return value


def _secret_marker(value) -> str:
    return SECRET_SET if value else SECRET_NOT_SET


def snapshot(obj: models.Model) -> dict:
    """The object's fields as JSON-safe values, with secrets reduced to a marker.

    A model may extend this with `audit_snapshot()` (e.g. to include child rows).
    """
    data = {}
    for field in obj._meta.concrete_fields:
        # Timestamps maintained by Django change on every save and say nothing new.
        if field.primary_key or getattr(field, "auto_now", False):
            continue
        value = getattr(obj, field.attname)
        if getattr(field, "is_secret", False):
            data[field.name] = _secret_marker(value)
        elif field.is_relation:
            related = getattr(obj, field.name)
            data[field.name] = str(related) if related is not None else None
        else:
            data[field.name] = _json_value(value)
    if hasattr(obj, "audit_snapshot"):
        data.update(obj.audit_snapshot())
    return data


def secret_fingerprints(obj: models.Model) -> dict:
    """Hashes of secret values, compared before/after to log "(changed)" without the value."""

    marks = {}
    for field in obj._meta.concrete_fields:
        if getattr(field, "is_secret", False):
            value = getattr(obj, field.attname)
            marks[field.name] = hashlib.sha256(repr(value).encode()).hexdigest()
    return marks


def record(
    actor,
    action: str,
    obj: models.Model,
    before: dict | None = None,
    after: dict | None = None,
    message: str = "",
) -> AuditEntry:
    user = actor if actor is not None and actor.is_authenticated else None
    return AuditEntry.objects.create(
        actor=user,
        actor_name=user.get_username() if user else "system",
        action=action,
        message=message[:300],
        content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        before=before,
        after=after,
        request_id=current_request_id.get(),
    )


def record_created(actor, obj: models.Model) -> AuditEntry:
    return record(actor, AuditAction.CREATED, obj, after=snapshot(obj))


def record_deleted(actor, obj: models.Model, before: dict) -> AuditEntry:
    return record(actor, AuditAction.DELETED, obj, before=before)


class ChangeTracker:
    """Snapshot an object before an edit and record the difference after it."""

    def __init__(self, obj: models.Model):
        self.obj = obj
        self.before = snapshot(obj)
        self.fingerprints = secret_fingerprints(obj)

    def record(self, actor) -> AuditEntry | None:
        after = snapshot(self.obj)
        for name, mark in secret_fingerprints(self.obj).items():
            if mark != self.fingerprints.get(name):
                after[name] = "(changed)"
        if after == self.before:
            return None
        return record(actor, AuditAction.UPDATED, self.obj, before=self.before, after=after)


# -- reading the trail ------------------------------------------------------------------


def readable_value(value) -> str:
    """A snapshot value as people read it: yes/no, lists one item a line, a child row
    (a resource group, a component) as "label: value" pairs, never a Python repr."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{_label(key)}: {readable_value(item)}" for key, item in value.items())
    if isinstance(value, list):
        if all(isinstance(item, dict) for item in value):
            return "\n".join(f"{n}. {readable_value(item)}" for n, item in enumerate(value, 1))
        return ", ".join(readable_value(item) for item in value)
    return str(value)


# Words in snapshot keys that read as abbreviations ("gpu_count" -> "GPU count").
ABBREVIATIONS = {"gpu": "GPU", "mig": "MIG", "cpu": "CPU", "ram": "RAM", "gb": "(GB)"}


def _label(name: str) -> str:
    return " ".join(ABBREVIATIONS.get(word, word) for word in name.split("_"))


def field_label(model: type[models.Model] | None, name: str) -> str:
    """A snapshot key's human name: the model field's verbose name where there is one."""
    try:
        field = model._meta.get_field(name) if model else None
    except FieldDoesNotExist:  # a key an `audit_snapshot()` adds
        field = None
    label = getattr(field, "verbose_name", None) or _label(name)
    return str(label)[:1].upper() + str(label)[1:]


def readable_changes(entry: AuditEntry) -> list[tuple[str, str, str]]:
    """(field, before, after) of an entry, each in words."""
    model = entry.content_type.model_class()
    return [
        (field_label(model, name), readable_value(before), readable_value(after))
        for name, before, after in entry.changes()
    ]
