import re

from django import forms

from portal.forms import PortalFormMixin
from profiles import partitioning
from profiles.choices import InfrastructureKind, PartitioningMode
from profiles.mig import catalog as mig_catalog
from profiles.models import Infrastructure, PartitioningStrategy

DEFAULT_GPU_MODEL = "A100-40GB"
# RFC 1123 names: nodes and ConfigMaps are subdomains, namespaces are labels.
_DNS_PART = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = re.compile(rf"^(?=.{{1,253}}$){_DNS_PART}(\.{_DNS_PART})*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
COUNT_PREFIX = "count_"


def count_field_name(profile_name: str) -> str:
    return f"{COUNT_PREFIX}{profile_name}"


class PartitioningStrategyForm(PortalFormMixin, forms.ModelForm):
    """Whole GPUs, a named layout or a custom mix for one GPU model on one infrastructure.

    The custom-mix count fields are those of the chosen GPU model (the page reloads them
    when the model changes). After `is_valid()`, `preview` holds the live feedback.
    """

    gpu_model = forms.ChoiceField(label="GPU model")
    # A select, not radio buttons: portal.js reads the field's value to show the sets.
    mode = forms.ChoiceField(label="Partitioning", choices=PartitioningMode.choices)
    layout_name = forms.ChoiceField(label="Named layout", required=False)

    class Meta:
        model = PartitioningStrategy
        fields = [
            "infrastructure",
            "gpu_model",
            "mode",
            "layout_name",
            "nodes",
            "config_map_name",
            "config_map_namespace",
        ]
        widgets = {"nodes": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.preview: partitioning.Preview | None = None
        if self.user is not None:
            self.fields["infrastructure"].queryset = Infrastructure.objects.for_user(
                self.user, "view"
            )
        self.fields["gpu_model"].choices = [(m, m) for m in mig_catalog.mig_capable_models()]
        if not self.initial.get("gpu_model"):
            self.initial["gpu_model"] = DEFAULT_GPU_MODEL
        self.chosen_model = self._chosen_model()
        self.fields["layout_name"].choices = [("", "—")] + [
            (name, _named_label(layout))
            for name, layout in mig_catalog.named_layouts(self.chosen_model).items()
            if name != "all-disabled"  # that is "whole GPUs"
        ]
        stored = self.instance.custom_counts or {}
        for profile in mig_catalog.geometry(self.chosen_model).profiles:
            self.fields[count_field_name(profile.name)] = forms.IntegerField(
                label=profile.name,
                required=False,
                min_value=0,
                initial=stored.get(profile.name, 0)
                if self.instance.gpu_model == self.chosen_model
                else 0,
                help_text=f"{profile.memory_slices} of {self._slices} memory slices, "
                f"at most {profile.max_count}",
                widget=forms.NumberInput(attrs={"min": 0, "max": profile.max_count}),
            )

    @property
    def _slices(self) -> int:
        return mig_catalog.geometry(self.chosen_model).memory_slices

    def _chosen_model(self) -> str:
        models = mig_catalog.mig_capable_models()
        if self.is_bound:
            value = self.data.get(self.add_prefix("gpu_model"))
        else:
            value = self.initial.get("gpu_model")
        if value in models:
            return value
        if self.instance.gpu_model in models:
            return self.instance.gpu_model
        return DEFAULT_GPU_MODEL

    def count_fields(self):
        return [self[name] for name in self.fields if name.startswith(COUNT_PREFIX)]

    @property
    def fieldsets(self):
        counts = [field.name for field in self.count_fields()]
        operator = ["config_map_name", "config_map_namespace"]
        return [
            ("Partitioning", ["infrastructure", "gpu_model", "mode"], ""),
            ("Named layout", ["layout_name"], "mode=named"),
            ("Custom mix: instances on each GPU", counts, "mode=custom"),
            ("Nodes", ["nodes"], ""),
            ("GPU Operator (existing Kubernetes clusters)", operator, ""),
        ]

    def clean(self):
        cleaned = super().clean()
        model, mode = cleaned.get("gpu_model"), cleaned.get("mode")
        infrastructure = cleaned.get("infrastructure")
        if infrastructure is not None and model:
            self._clean_infrastructure(infrastructure, model)
        nodes = self._clean_nodes(infrastructure)
        if model and mode:
            per_gpu, problem = self._clean_layout(model, mode, infrastructure, nodes)
            if self.instance.pk and not problem and infrastructure is not None:
                self._clean_slices_kept(infrastructure, model, mode, per_gpu)
        if infrastructure is not None:
            self._clean_config_map(infrastructure, cleaned)
        return cleaned

    def _clean_infrastructure(self, infrastructure: Infrastructure, model: str) -> None:
        offer = infrastructure.gpu_offer()
        if model not in offer:
            offered = ", ".join(sorted(offer)) or "no GPUs"
            self.add_error(
                "gpu_model",
                f"{infrastructure} has no {model} GPUs (it offers {offered}); "
                "add them to the infrastructure first.",
            )

    def _clean_nodes(self, infrastructure: Infrastructure | None) -> list[str]:
        names = [line.strip() for line in (self.cleaned_data.get("nodes") or "").splitlines()]
        names = [name for name in names if name]
        bad = [name for name in names if not DNS_SUBDOMAIN.match(name)]
        if bad:
            self.add_error("nodes", f"Not node names: {', '.join(bad[:5])} (lowercase, a-z0-9.-).")
        elif len(set(names)) != len(names):
            self.add_error("nodes", "Each node once, please.")
        elif infrastructure is not None and names:
            if infrastructure.kind == InfrastructureKind.DATA_CENTER:
                unknown = sorted(set(names) - set(infrastructure.host_list()))
                if unknown:
                    self.add_error(
                        "nodes", f"Not hosts of {infrastructure}: {', '.join(unknown[:5])}."
                    )
            elif infrastructure.kind == InfrastructureKind.LOCAL:
                self.add_error("nodes", "The local infrastructure is one machine; leave empty.")
        return names

    def _clean_layout(self, model, mode, infrastructure, nodes) -> tuple[dict | None, str]:
        """The per-GPU counts chosen (None: whole GPUs), and why they are invalid."""
        counts = {}
        for field in self.count_fields():
            value = self.cleaned_data.get(field.name)
            if value:
                counts[field.label] = value
        layout_name = self.cleaned_data.get("layout_name") or ""
        if mode == PartitioningMode.NAMED and not layout_name:
            self.add_error("layout_name", "Choose one of the named layouts.")
            return None, "no named layout chosen"
        per_gpu, problem = partitioning.layout_counts(model, mode, layout_name, counts)
        self.preview = partitioning.preview(model, per_gpu, problem, infrastructure, nodes)
        if problem and mode == PartitioningMode.CUSTOM:
            first = (
                next((f.name for f in self.count_fields() if self.cleaned_data.get(f.name)), None)
                or self.count_fields()[0].name
            )
            self.add_error(first, f"Invalid layout: {problem}.")
        elif problem:
            self.add_error("layout_name", f"Invalid layout: {problem}.")
        self.instance.custom_counts = counts if mode == PartitioningMode.CUSTOM else {}
        if mode != PartitioningMode.NAMED:
            self.cleaned_data["layout_name"] = ""
        return per_gpu, problem

    def _clean_slices_kept(self, infrastructure, model, mode, per_gpu) -> None:
        """The saved strategy's slices that compute profiles ask for stay, as for deleting:
        next to the field whose change takes them away."""
        saved = PartitioningStrategy.objects.get(pk=self.instance.pk)
        moved = saved.infrastructure_id != infrastructure.pk or saved.gpu_model != model
        offered = None if moved else per_gpu
        refusal = partitioning.slices_in_use(saved, offered)
        if not refusal:
            return
        if saved.infrastructure_id != infrastructure.pk:
            field = "infrastructure"
        elif saved.gpu_model != model:
            field = "gpu_model"
        elif mode == PartitioningMode.NAMED:
            field = "layout_name"
        elif mode == PartitioningMode.CUSTOM:
            field = count_field_name(next(iter(partitioning.slices_taken(saved, offered))))
        else:
            field = "mode"
        self.add_error(field, refusal)

    def _clean_config_map(self, infrastructure: Infrastructure, cleaned: dict) -> None:
        name = cleaned.get("config_map_name") or ""
        namespace = cleaned.get("config_map_namespace") or ""
        if name and not DNS_SUBDOMAIN.match(name):
            self.add_error("config_map_name", "A ConfigMap name: lowercase a-z, 0-9, - and .")
        if namespace and not DNS_LABEL.match(namespace):
            self.add_error("config_map_namespace", "A namespace: lowercase a-z, 0-9 and -.")
        others = infrastructure.partitionings.exclude(pk=self.instance.pk).first()
        if others and (others.config_map_name, others.config_map_namespace) != (name, namespace):
            self.add_error(
                "config_map_name",
                f"The GPU Operator reads one ConfigMap; the other partitionings of "
                f"{infrastructure} use {others.config_map_namespace}/{others.config_map_name}.",
            )


def _named_label(layout: mig_catalog.NamedLayout) -> str:
    if not layout.mig_devices:
        return f"{layout.name} (MIG on, no instances)"
    parts = " + ".join(f"{n}× {name}" for name, n in layout.mig_devices.items())
    return f"{layout.name} ({parts})"
