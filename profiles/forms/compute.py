from django import forms
from django.db import transaction

from portal.forms import InlineFormsetMixin, InlineRowsFormSet, PortalFormMixin
from profiles import catalog, partitioning
from profiles.choices import InfrastructureKind
from profiles.forms.validators import validate_new_profile_name
from profiles.mig import catalog as mig_catalog
from profiles.models import ComputeProfile, Infrastructure, ResourceGroup
from services.compat import check


def mig_profile_choices(
    offers: dict[str, dict[str, dict[str, int]]], current: tuple[str, str] = ("", "")
) -> list:
    """The MIG profiles partitionings provide, grouped by GPU model (and infrastructure when
    the group's infrastructure is not known yet); plus the group's current value, if any."""
    grouped = []
    for where, by_model in offers.items():
        for model, per_gpu in by_model.items():
            label = f"{model} on {where}" if len(offers) > 1 else model
            grouped.append(
                (label, [(name, f"{name} ({n} per {model} GPU)") for name, n in per_gpu.items()])
            )
    model, name = current
    offered = {value for _, options in grouped for value, _ in options}
    if name and name not in offered:
        grouped.append((model or "Other", [(name, f"{name} (not offered by a partitioning)")]))
    return [("", "Whole GPUs")] + grouped


class MigProfileField(forms.ChoiceField):
    """Any catalog profile name passes here; `ResourceGroupForm.clean` says what is offered,
    so a profile the partitioning lacks gets that explanation, not "select a valid choice"."""

    def valid_value(self, value) -> bool:
        return value in _CATALOG_PROFILE_NAMES or super().valid_value(value)


_CATALOG_PROFILE_NAMES = {
    p.name
    for model in mig_catalog.mig_capable_models()
    for p in mig_catalog.geometry(model).profiles
}


def partitioning_offers(infrastructure: Infrastructure | None) -> dict:
    """Infrastructure name → GPU model → MIG profile → instances per GPU."""
    if infrastructure is not None:
        return {str(infrastructure): partitioning.offered_per_gpu(infrastructure)}
    offers: dict[str, dict[str, dict[str, int]]] = {}
    for item in Infrastructure.objects.filter(partitionings__isnull=False).distinct():
        found = partitioning.offered_per_gpu(item)
        if found:
            offers[str(item)] = found
    return offers


class ResourceGroupForm(forms.ModelForm):
    gpu_model = forms.ChoiceField(required=False, label="GPU model")
    mig_profile = MigProfileField(required=False, label="MIG slice profile")

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

    def __init__(
        self,
        *args,
        infrastructure: Infrastructure | None = None,
        offers: dict | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.infrastructure = infrastructure
        self.offers = partitioning_offers(infrastructure) if offers is None else offers
        self.fields["gpu_model"].choices = [("", "No GPU")] + catalog.choices_gpu_models()
        current = (self.instance.gpu_model, self.instance.mig_profile)
        self.fields["mig_profile"].choices = mig_profile_choices(self.offers, current)
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
        if not mig_profile and count > per_node:
            self.add_error(
                "gpu_count",
                f"One node offers at most {per_node}× {model}; the GPU count is per node "
                f"({_who_gets_it(nodes)}): for more, raise the node count.",
            )
        if mig_profile and not self.errors.get("mig_profile"):
            self._clean_partitioned(model, mig_profile, count, per_node, nodes)
        name = cleaned.get("instance_type")
        if name:
            self._clean_instance_type(name, model)

    def _clean_partitioned(self, model, mig_profile, count, gpus_per_node, nodes) -> None:
        """A MIG group needs a partitioning that provides its slices, and enough of them."""
        infrastructure = self.infrastructure
        per_gpu = self.offers.get(str(infrastructure), {}).get(model, {}).get(mig_profile, 0)
        if not per_gpu:
            self.add_error(
                "mig_profile",
                f"The partitioning of {infrastructure} offers no {mig_profile} slices of "
                f"{model}; partition it first.",
            )
            return
        per_node = per_gpu * gpus_per_node
        if count > per_node:
            self.add_error(
                "gpu_count",
                f"One node offers {per_node}× {mig_profile} ({per_gpu} on each of its "
                f"{gpus_per_node} {model} GPUs); the count is per node "
                f"({_who_gets_it(nodes)}): for more, raise the node count.",
            )

    def _clean_instance_type(self, name: str, model: str) -> None:
        if self.infrastructure.kind != InfrastructureKind.PUBLIC_CLOUD:
            self.add_error("instance_type", "Only public-cloud infrastructure has instance types.")
            return
        itype = self.infrastructure.instance_types.filter(name=name).first()
        if itype is None:
            self.add_error("instance_type", f"{name} is not enabled on {self.infrastructure}.")
        elif itype.gpu_model != model:
            self.add_error("instance_type", f"{name} has no {model} GPUs.")


class BaseResourceGroupFormSet(InlineRowsFormSet):
    infrastructure: Infrastructure | None = None

    def get_form_kwargs(self, index):
        kwargs = super().get_form_kwargs(index)
        kwargs["infrastructure"] = self.infrastructure
        # One look-up of the partitionings for all rows, not one per row.
        if getattr(self, "_offers_for", False) != self.infrastructure:
            self._offers = partitioning_offers(self.infrastructure)
            self._offers_for = self.infrastructure
        kwargs["offers"] = self._offers
        return kwargs

    def clean(self):
        super().clean()
        if not self.kept_forms():
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
    # Never build more rows than that, whatever TOTAL_FORMS says (Django's default builds
    # up to max_num + 1000: a POST with TOTAL_FORMS=2**63 kept a worker busy for 20 s).
    absolute_max=16,
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
        if self.instance.pk and not self.is_bound:
            # The rows offer the MIG slices of the profile's own infrastructure.
            self.inline.infrastructure = self.instance.infrastructure

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if not self.instance.slug:  # an existing profile keeps its slug when renamed
            validate_new_profile_name(ComputeProfile, name)
        return name

    def prepare_inline(self) -> None:
        self.inline.infrastructure = self.cleaned_data.get("infrastructure")

    def is_valid(self) -> bool:
        valid = super().is_valid()
        services = self.cleaned_data.get("default_services_profile") if valid else None
        if services is not None:
            # The default services profile must fit the resource groups (issue 7).

            groups = [
                form.cleaned_data
                for form in self.inline.forms
                if form.cleaned_data and not form.cleaned_data.get("DELETE")
            ]
            found = check(services, self.cleaned_data.get("infrastructure"), groups)
            for error in found.errors:
                self.add_error("default_services_profile", error)
            valid = found.ok
        return valid

    @transaction.atomic
    def save(self, commit: bool = True):
        # Super-sized changes the shape too (a dedicated cluster, `DEDICATED_CLUSTER_LABEL`):
        # a new version has the warm pool replace instances of the old one.
        shape = {"infrastructure", "super_sized"}
        resources_changed = self.inline.has_changed() or bool(shape & set(self.changed_data))
        profile = super().save(commit=False)
        if self.instance.pk and resources_changed:
            profile.version += 1
        profile.save()
        self.save_inline(profile)
        return profile


def _who_gets_it(nodes: int) -> str:
    """Who gets a group's per-node count, for its messages."""
    return f"each of the group's {nodes} nodes gets it" if nodes > 1 else "its one node gets it"
