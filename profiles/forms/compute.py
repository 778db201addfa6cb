from django import forms
from django.db import transaction

from portal.forms import InlineFormsetMixin, PortalFormMixin
from profiles import catalog
from profiles.choices import InfrastructureKind
from profiles.mig import catalog as mig_catalog
from profiles.models import ComputeProfile, Infrastructure, ResourceGroup


def mig_profile_choices() -> list:
    grouped = []
    for model in mig_catalog.mig_capable_models():
        names = [p.name for p in mig_catalog.geometry(model).profiles]
        grouped.append((model, [(name, f"{name} ({model})") for name in names]))
    return [("", "Whole GPUs")] + grouped


class ResourceGroupForm(forms.ModelForm):
    gpu_model = forms.ChoiceField(required=False, label="GPU model")
    mig_profile = forms.ChoiceField(required=False, label="MIG slice profile")

    class Meta:
        model = ResourceGroup
        fields = [
            "gpu_model",
            "gpu_count",
            "mig_profile",
            "cpu",
            "ram_gb",
            "storage_gb",
            "node_count",
            "instance_type",
        ]

    def __init__(self, *args, infrastructure: Infrastructure | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.infrastructure = infrastructure
        self.fields["gpu_model"].choices = [("", "No GPU")] + catalog.choices_gpu_models()
        self.fields["mig_profile"].choices = mig_profile_choices()
        self.fields["node_count"].min_value = 1
        self.fields["node_count"].widget.attrs["min"] = 1

    def clean(self):
        cleaned = super().clean()
        model = cleaned.get("gpu_model")
        count = cleaned.get("gpu_count") or 0
        mig_profile = cleaned.get("mig_profile")
        if count and not model:
            self.add_error("gpu_model", "Choose the GPU model these GPUs are.")
        if model and not count:
            self.add_error("gpu_count", "Ask for at least one GPU, or choose “No GPU”.")
        if mig_profile:
            self._clean_mig_profile(model, mig_profile)
        if (cleaned.get("node_count") or 1) < 1:
            self.add_error("node_count", "A group needs at least one node.")
        if self.infrastructure is not None and model and count:
            self._clean_against_infrastructure(cleaned, model, count, mig_profile)
        return cleaned

    def _clean_mig_profile(self, model: str, mig_profile: str) -> None:
        if not model:
            self.add_error("gpu_model", "A MIG slice profile needs its GPU model.")
            return
        if model not in mig_catalog.mig_capable_models():
            self.add_error("mig_profile", f"{model} GPUs cannot be partitioned with MIG.")
            return
        names = {p.name for p in mig_catalog.geometry(model).profiles}
        if mig_profile not in names:
            self.add_error(
                "mig_profile",
                f"{model} has no MIG profile {mig_profile}; it offers {', '.join(sorted(names))}.",
            )

    def _clean_against_infrastructure(self, cleaned, model, count, mig_profile) -> None:
        infrastructure = self.infrastructure
        offer = infrastructure.gpu_offer()
        if model not in offer:
            offered = ", ".join(sorted(offer)) or "no GPUs"
            self.add_error(
                "gpu_model", f"{infrastructure} offers no {model} GPUs (it offers {offered})."
            )
            return
        nodes = cleaned.get("node_count") or 1
        per_node = offer[model]
        if not mig_profile and count > per_node * nodes:
            needed = -(-count // per_node)
            self.add_error(
                "gpu_count",
                f"One node offers at most {per_node}× {model}; {count} GPUs need a node count "
                f"of at least {needed}.",
            )
        name = cleaned.get("instance_type")
        if name:
            self._clean_instance_type(name, model)

    def _clean_instance_type(self, name: str, model: str) -> None:
        if self.infrastructure.kind != InfrastructureKind.PUBLIC_CLOUD:
            self.add_error("instance_type", "Only public-cloud infrastructure has instance types.")
            return
        itype = self.infrastructure.instance_types.filter(name=name).first()
        if itype is None:
            self.add_error("instance_type", f"{name} is not enabled on {self.infrastructure}.")
        elif itype.gpu_model != model:
            self.add_error("instance_type", f"{name} has no {model} GPUs.")


class BaseResourceGroupFormSet(forms.BaseInlineFormSet):
    infrastructure: Infrastructure | None = None

    def get_form_kwargs(self, index):
        kwargs = super().get_form_kwargs(index)
        kwargs["infrastructure"] = self.infrastructure
        return kwargs

    def clean(self):
        super().clean()
        live = [
            form
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and (form.instance.pk or form.has_changed())
        ]
        if not live:
            raise forms.ValidationError("A compute profile needs at least one resource group.")


ResourceGroupFormSet = forms.inlineformset_factory(
    ComputeProfile,
    ResourceGroup,
    form=ResourceGroupForm,
    formset=BaseResourceGroupFormSet,
    extra=1,
    can_delete=True,
    max_num=16,
    validate_max=True,
)


class ComputeProfileForm(PortalFormMixin, InlineFormsetMixin, forms.ModelForm):
    """The profile and its resource groups, validated and saved together."""

    inline_formset_class = ResourceGroupFormSet
    inline_prefix = "groups"
    inline_title = "Resource groups"
    inline_item_name = "resource group"

    fieldsets = [
        ("Profile", ["name", "description", "infrastructure", "published"], ""),
        (
            "Allocation strategy",
            ["allocation_strategy", "desired_capacity", "super_sized"],
            "",
        ),
        ("Services", ["default_services_profile"], ""),
    ]

    class Meta:
        model = ComputeProfile
        fields = [
            "name",
            "description",
            "infrastructure",
            "published",
            "allocation_strategy",
            "desired_capacity",
            "super_sized",
            "default_services_profile",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.user is not None:
            self.fields["infrastructure"].queryset = Infrastructure.objects.for_user(
                self.user, "view"
            )

    def prepare_inline(self) -> None:
        self.inline.infrastructure = self.cleaned_data.get("infrastructure")

    @transaction.atomic
    def save(self, commit: bool = True):
        resources_changed = self.inline.has_changed() or "infrastructure" in self.changed_data
        profile = super().save(commit=False)
        if self.instance.pk and resources_changed:
            profile.version += 1
        profile.save()
        self.save_inline(profile)
        return profile
