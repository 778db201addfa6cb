"""The API's writes go through the pages' own forms, so every rule and message is theirs.

`bind()` turns a JSON body into the form's data: the object's current values, overlaid by
the body (a PATCH names only what changes), and, for a form with inline rows (a compute
profile's resource groups), a list of row objects. `form_request_serializer()` describes the
same fields in the OpenAPI schema, read from the form, so the schema cannot drift from it.
"""

import inspect
import json
from functools import cache

from django import forms
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from api.problems import NON_FIELD
from portal.forms import PortalFormMixin

UNKNOWN = "Unknown field."
NOT_BOOLEAN = "Give true or false."


def _form_kwargs(form_class, instance, user) -> dict:
    takes_user = "user" in inspect.signature(form_class.__init__).parameters
    kwargs = {"user": user} if takes_user or issubclass(form_class, PortalFormMixin) else {}
    if issubclass(form_class, forms.BaseModelForm):
        kwargs["instance"] = instance
    return kwargs


class NotBoolean(ValueError):
    """A checkbox field was given a JSON value other than true, false or null."""


def _as_data(field: forms.Field, value):
    """A JSON value as the form's widget reads it from a POST.

    A checkbox takes only JSON true, false or null: its widget reads any other string
    (0 sent as "0", "no", "off") as ticked, the opposite of what the client meant.
    """
    if value is None:
        return ""
    if isinstance(field, forms.BooleanField):
        if not isinstance(value, bool):
            raise NotBoolean(NOT_BOOLEAN)
        return value
    if getattr(field.widget, "allow_multiple_selected", False):
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _current(form) -> dict:
    """What the page's form would post unchanged; secret fields blank (keep the stored one)."""
    data = {}
    for name, field in form.fields.items():
        if name in getattr(form, "secret_fields", ()):
            data[name] = ""
            continue
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            data[name] = bool(value)
        elif getattr(field.widget, "allow_multiple_selected", False):
            data[name] = [str(getattr(v, "pk", v)) for v in value or []]
        elif isinstance(value, dict | list):
            data[name] = json.dumps(value)
        else:
            data[name] = "" if value is None else value
    return data


def _row_fields(inline) -> list[str]:
    fk = getattr(inline, "fk", None)
    skip = {"id", "DELETE", "ORDER", fk.name if fk else ""}
    return [name for name in inline.empty_form.fields if name not in skip]


def _inline_data(inline, rows) -> dict:
    """The formset's POST data: the given rows replace the existing ones, in order."""
    existing = inline.initial_forms
    names = _row_fields(inline)
    if rows is None:
        rows = [{name: form[name].value() for name in names} for form in existing]
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValidationError({"rows": ["Give a list of objects."]})
    prefix = inline.prefix
    data = {
        f"{prefix}-TOTAL_FORMS": str(max(len(rows), len(existing))),
        f"{prefix}-INITIAL_FORMS": str(len(existing)),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    empty = inline.empty_form
    for index, row in enumerate(rows):
        unknown = set(row) - set(names)
        if unknown:
            raise ValidationError({f"rows[{index}].{name}": [UNKNOWN] for name in unknown})
        for name in names:
            field = empty.fields[name]
            try:
                value = _as_data(field, row[name]) if name in row else empty[name].value()
            except NotBoolean as error:
                raise ValidationError({f"rows[{index}].{name}": [str(error)]}) from None
            data[f"{prefix}-{index}-{name}"] = "" if value is None else value
        if index < len(existing):
            data[f"{prefix}-{index}-id"] = str(existing[index].instance.pk)
    for index in range(len(rows), len(existing)):
        data[f"{prefix}-{index}-id"] = str(existing[index].instance.pk)
        data[f"{prefix}-{index}-DELETE"] = "on"
    return data


def bind(form_class, payload, *, user, instance=None, rows_key: str = "", **form_kwargs):
    """The page's form bound to the JSON body and validated; `ValidationError` with the
    form's messages (rows as "<rows_key>[i].<field>") when it is not valid. `form_kwargs`
    are the form's own arguments (a group's AddMemberForm takes its `team`)."""
    if not isinstance(payload, dict):
        raise ValidationError({NON_FIELD: ["Send a JSON object."]})
    form_kwargs |= _form_kwargs(form_class, instance, user)
    unbound = form_class(**form_kwargs)
    unknown = set(payload) - set(unbound.fields) - {rows_key}
    if unknown:
        raise ValidationError({name: [UNKNOWN] for name in sorted(unknown)})
    data = _current(unbound)
    refused = {}
    for name, value in payload.items():
        if name in unbound.fields:
            try:
                data[name] = _as_data(unbound.fields[name], value)
            except NotBoolean as error:
                refused[name] = [str(error)]
    if refused:
        raise ValidationError(refused)
    if rows_key:
        try:
            data |= _inline_data(unbound.inline, payload.get(rows_key))
        except ValidationError as error:
            raise ValidationError(_renamed(error.detail, "rows", rows_key)) from error
    form = form_class(data, **form_kwargs)
    if not form.is_valid():
        raise ValidationError(form_errors(form, rows_key))
    return form


def _renamed(detail: dict, old: str, new: str) -> dict:
    return {key.replace(old, new, 1): value for key, value in detail.items()}


def form_errors(form, rows_key: str = "") -> dict[str, list[str]]:
    errors = {
        NON_FIELD if name == "__all__" else name: list(messages)
        for name, messages in form.errors.items()
    }
    if rows_key:
        for index, row in enumerate(form.inline.forms):
            for name, messages in row.errors.items():
                key = f"{rows_key}[{index}]" + ("" if name == "__all__" else f".{name}")
                errors[key] = list(messages)
        if form.inline.non_form_errors():
            errors[rows_key] = list(form.inline.non_form_errors())
    return errors


# -- the schema side ------------------------------------------------------------------------


def _schema_field(field: forms.Field) -> serializers.Field:
    kwargs = {"required": False, "help_text": str(field.help_text or field.label or "")}
    if isinstance(field, forms.BooleanField):
        return serializers.BooleanField(**kwargs)
    if isinstance(field, forms.ModelMultipleChoiceField):
        return serializers.ListField(child=serializers.IntegerField(), **kwargs)
    if isinstance(field, forms.ModelChoiceField):
        return serializers.IntegerField(allow_null=True, **kwargs)
    if isinstance(field, forms.MultipleChoiceField):
        return serializers.ListField(child=serializers.CharField(), **kwargs)
    if isinstance(field, forms.IntegerField):
        return serializers.IntegerField(allow_null=True, **kwargs)
    if isinstance(field, forms.FloatField | forms.DecimalField):
        return serializers.FloatField(allow_null=True, **kwargs)
    if isinstance(field, forms.JSONField):
        return serializers.JSONField(**kwargs)
    return serializers.CharField(allow_blank=True, allow_null=True, **kwargs)


def _fields_of(form) -> dict:
    return {name: _schema_field(field) for name, field in form.fields.items()}


@cache
def form_request_serializer(form_class, name: str, rows_key: str = ""):
    """A serializer describing the form's fields (all optional: the form says what is
    missing), with the inline rows as a list under `rows_key`."""
    form = form_class(**_form_kwargs(form_class, None, None))
    fields = _fields_of(form)
    if rows_key:
        row = type(f"{name}Row", (serializers.Serializer,), _row_schema(form.inline))
        fields[rows_key] = row(many=True, required=False)
    return type(name, (serializers.Serializer,), fields)


def _row_schema(inline) -> dict:
    empty = inline.empty_form
    return {name: _schema_field(empty.fields[name]) for name in _row_fields(inline)}
