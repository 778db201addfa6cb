"""Form pieces shared by every admin form: secret inputs and field sets."""

from django import forms


class SecretInput(forms.PasswordInput):
    """A password-style input that never renders the stored value back."""

    def __init__(self, attrs=None):
        super().__init__(attrs=attrs, render_value=False)


class SecretTextarea(forms.Textarea):
    """A textarea for multi-line secrets (SSH keys, kubeconfigs) that never shows the value."""

    def format_value(self, value):
        return None


def secret_placeholder(is_set: bool) -> str:
    return "Set. Leave blank to keep, or paste a new value to replace." if is_set else "Not set."


class SecretFieldsMixin:
    """Blank secret fields keep the stored value; the page only says "set" or "not set".

    `secret_fields` names model fields whose values must never be rendered.
    """

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            field = self.fields[name]
            stored = getattr(self.instance, name, "") if self.instance.pk else ""
            field.required = False
            field.initial = ""
            field.widget.attrs["placeholder"] = secret_placeholder(bool(stored))
            field.secret_is_set = bool(stored)

    def _keep_stored_secrets(self, cleaned_data: dict) -> None:
        for name in self.secret_fields:
            if not cleaned_data.get(name) and self.instance.pk:
                cleaned_data[name] = getattr(self.instance, name)


class PortalFormMixin:
    """What every admin form has: the requesting user, and fields grouped for the template.

    `fieldsets` is a list of (legend, field names, show-when) where show-when is a
    "field=value" condition the page's script uses to hide sets that do not apply.
    """

    fieldsets: list[tuple[str, list[str], str]] = []

    def __init__(self, *args, user=None, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def rendered_fieldsets(self):
        for legend, names, show_when in self.fieldsets:
            yield legend, [self[name] for name in names if name in self.fields], show_when


class InlineRowsFormSet(forms.BaseInlineFormSet):
    """An inline formset that can say which rows the save will keep."""

    def kept_forms(self) -> list:
        """Valid rows that are neither marked for deletion nor blank extras."""
        return [
            form
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and (form.instance.pk or form.has_changed())
        ]


class InlineFormsetMixin:
    """A model form that owns an inline formset of child rows (e.g. resource groups).

    The parent and its rows validate and save together, so the generic edit view treats
    them as one form. Rows keep the order the page showed them in (`position`).
    """

    inline_formset_class = None
    inline_prefix = "rows"
    inline_title = ""
    inline_item_name = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inline = self.inline_formset_class(
            self.data if self.is_bound else None, instance=self.instance, prefix=self.inline_prefix
        )

    def is_valid(self) -> bool:
        parent_valid = super().is_valid()
        self.prepare_inline()
        return self.inline.is_valid() and parent_valid

    def prepare_inline(self) -> None:
        """Hook: hand the rows what they need from the parent's cleaned data."""

    def save_inline(self, parent) -> None:
        self.inline.instance = parent
        self.inline.save()
        saved = [form.instance for form in self.inline.forms if form.instance.pk]
        for position, row in enumerate(saved):
            if row.position != position:
                type(row).objects.filter(pk=row.pk).update(position=position)
