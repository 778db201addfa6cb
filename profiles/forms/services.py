from django import forms
from django.db import transaction

from portal.forms import InlineFormsetMixin, InlineRowsFormSet, PortalFormMixin
from portal.models import Team
from profiles.forms.validators import validate_new_profile_name
from profiles.models import ServiceComponent, ServicesProfile
from services import components
from services.components.base import has_control_character


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
            if has_control_character(line):
                raise forms.ValidationError(
                    f"Line {number} holds a control character (a NUL byte, say): "
                    "parameters are plain text."
                )
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
        version = cleaned.get("version")
        problem = components.version_problem(version) if version else ""
        if problem:
            self.add_error("version", problem)
        if found and "parameters" in cleaned:
            try:
                found.resolve(cleaned["parameters"])
            except ValueError as error:
                self.add_error("parameters", str(error))
        return cleaned


class BaseServiceComponentFormSet(InlineRowsFormSet):
    def clean(self):
        super().clean()
        capabilities = [
            form.cleaned_data["capability"]
            for form in self.kept_forms()
            if form.cleaned_data.get("capability")
        ]
        if not capabilities:
            raise forms.ValidationError("A services profile needs at least one component.")
        if len(set(capabilities)) != len(capabilities):
            raise forms.ValidationError("Each capability may appear once.")
        # Order and dependencies (e.g. MLflow before the pipelines that log to it).
        rows = [
            (
                form.cleaned_data["capability"],
                form.cleaned_data.get("component") or "",
                form.cleaned_data.get("parameters") or {},
            )
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("capability")
        ]
        # (Parameters were checked row by row, next to their field.)
        problems = components.check_stack(rows, parameters=False)
        if problems:
            raise forms.ValidationError(problems)


ServiceComponentFormSet = forms.inlineformset_factory(
    ServicesProfile,
    ServiceComponent,
    form=ServiceComponentForm,
    formset=BaseServiceComponentFormSet,
    extra=1,
    can_delete=True,
    max_num=20,
    validate_max=True,
    # Never build more rows than that, whatever TOTAL_FORMS says (Django's default builds
    # up to max_num + 1000: a POST with TOTAL_FORMS=2**63 kept a worker busy for 20 s).
    absolute_max=20,
)


class GroupsField(forms.ModelMultipleChoiceField):
    """Groups by id; an id no database column can hold is an invalid choice, not a 500."""

    def _check_values(self, value):
        for pk in value or ():
            text = str(pk)
            # "²".isdigit() is true, but int("²") fails: only ASCII digits are ids.
            if not (text.isascii() and text.isdigit()) or int(text) > 2**31 - 1:
                raise forms.ValidationError(
                    self.error_messages["invalid_choice"],
                    code="invalid_choice",
                    params={"value": text},
                )
        return super()._check_values(value)


class ServicesProfileForm(PortalFormMixin, InlineFormsetMixin, forms.ModelForm):
    """The profile and its components, validated and saved together."""

    inline_formset_class = ServiceComponentFormSet
    inline_prefix = "components"
    inline_title = "Components"
    inline_item_name = "component"
    fieldsets = [("Services profile", ["name", "description", "published", "teams"], "")]

    teams = GroupsField(
        Team.objects.all(),
        required=False,
        label="Groups",
        help_text="Groups whose members may deploy it; none means every group.",
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ServicesProfile
        fields = ["name", "description", "published"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["teams"] = list(self.instance.teams.values_list("pk", flat=True))

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if not self.instance.slug:  # an existing profile keeps its slug when renamed
            validate_new_profile_name(ServicesProfile, name)
        return name

    @transaction.atomic
    def save(self, commit: bool = True):
        profile = super().save()
        self.save_inline(profile)
        profile.teams.set(self.cleaned_data.get("teams") or [])
        return profile
