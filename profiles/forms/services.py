from django import forms
from django.db import transaction

from portal.forms import InlineFormsetMixin, PortalFormMixin
from profiles import components
from profiles.models import ServiceComponent, ServicesProfile


class KeyValueField(forms.CharField):
    """Parameters as `key=value` lines, stored as a dict."""

    widget = forms.Textarea(attrs={"rows": 2, "placeholder": "key=value, one per line"})

    def prepare_value(self, value):
        if isinstance(value, dict):
            return "\n".join(f"{k}={v}" for k, v in value.items())
        return value

    def to_python(self, value) -> dict:
        text = super().to_python(value) or ""
        result: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, val = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Line {number} is not key=value: “{line.strip()}”.")
            if key.strip() in result:
                raise forms.ValidationError(f"“{key.strip()}” is given twice.")
            result[key.strip()] = val.strip()
        return result


class ServiceComponentForm(forms.ModelForm):
    parameters = KeyValueField(required=False)

    class Meta:
        model = ServiceComponent
        fields = ["capability", "component", "version", "parameters"]

    def clean(self):
        cleaned = super().clean()
        capability = cleaned.get("capability")
        found = components.component(cleaned.get("component") or "")
        if found and capability and capability not in found.capabilities:
            provides = ", ".join(components.Capability(c).label for c in found.capabilities)
            self.add_error("component", f"{found.name} provides {provides}, not this capability.")
        if found and not cleaned.get("version"):
            cleaned["version"] = found.default_version
        return cleaned


class BaseServiceComponentFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        capabilities = [
            form.cleaned_data["capability"]
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("capability")
        ]
        if not capabilities:
            raise forms.ValidationError("A services profile needs at least one component.")
        if len(set(capabilities)) != len(capabilities):
            raise forms.ValidationError("Each capability may appear once.")


ServiceComponentFormSet = forms.inlineformset_factory(
    ServicesProfile,
    ServiceComponent,
    form=ServiceComponentForm,
    formset=BaseServiceComponentFormSet,
    extra=1,
    can_delete=True,
    max_num=20,
    validate_max=True,
)


class ServicesProfileForm(PortalFormMixin, InlineFormsetMixin, forms.ModelForm):
    """The profile and its components, validated and saved together."""

    inline_formset_class = ServiceComponentFormSet
    inline_prefix = "components"
    inline_title = "Components"
    inline_item_name = "component"
    fieldsets = [("Services profile", ["name", "description", "published"], "")]

    class Meta:
        model = ServicesProfile
        fields = ["name", "description", "published"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    @transaction.atomic
    def save(self, commit: bool = True):
        profile = super().save()
        self.save_inline(profile)
        return profile
