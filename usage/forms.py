import re
from datetime import date

from django import forms
from django.utils import timezone

from portal.forms import PortalFormMixin
from profiles import catalog
from usage.models import Price
from usage.showback import DIMENSIONS

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def known_instance_types() -> set[str]:
    return {it.name for it in catalog.INSTANCE_TYPES}


def known_regions() -> set[str]:
    return {region for provider in catalog.PROVIDERS.values() for region in provider.regions}


class PriceForm(PortalFormMixin, forms.ModelForm):
    """A price: each kind names what it prices in its own way, checked against the catalog."""

    fieldsets = [("Price", ["kind", "key", "region", "amount", "note"], "")]

    class Meta:
        model = Price
        fields = ["kind", "key", "region", "amount", "note"]
        labels = {"key": "GPU model or instance type"}
        help_texts = {
            "amount": "USD per GPU-hour, per instance-hour or per GB-month (storage).",
            "region": "Instance types only, e.g. us-east-1; empty: every region.",
        }

    def clean(self):
        data = super().clean()
        kind, key, region = data.get("kind"), data.get("key", ""), data.get("region", "")
        if kind == Price.Kind.GPU_MODEL and key not in catalog.GPU_MODELS:
            self.add_error("key", "Not a GPU model the catalog knows, e.g. A100-40GB or H100-80GB.")
        if kind == Price.Kind.INSTANCE_TYPE and key not in known_instance_types():
            self.add_error("key", "Not an instance type the catalog knows, e.g. g5.xlarge.")
        if kind == Price.Kind.STORAGE and key:
            self.add_error("key", "Storage has one price: leave this empty.")
        if kind != Price.Kind.INSTANCE_TYPE and region:
            self.add_error("region", "Only instance types have prices per region.")
        elif region and region not in known_regions():
            self.add_error("region", "Not a cloud region the catalog knows, e.g. us-east-1.")
        taken = Price.objects.filter(kind=kind, key=key, region=region).exclude(pk=self.instance.pk)
        if kind and not self.errors and taken.exists():
            self.add_error("key", "There is already a price for this; edit that one instead.")
        return data

    def _post_clean(self):
        self.instance.updated = timezone.now()
        super()._post_clean()

    def validate_unique(self):
        """`clean` names the field; the constraint's own message would be above the form."""


class MonthForm(forms.Form):
    """Which month the showback shows, as YYYY-MM; the current month by default."""

    month = forms.CharField(max_length=7, required=False, help_text="YYYY-MM")
    by = forms.ChoiceField(
        choices=[(key, label) for key, (label, _) in DIMENSIONS.items()], required=False
    )

    def clean_month(self) -> date:
        text = self.cleaned_data["month"].strip()
        if not text:
            return timezone.localdate().replace(day=1)
        match = _MONTH.match(text)
        if not match or not (2000 <= int(match[1]) <= 2100 and 1 <= int(match[2]) <= 12):
            raise forms.ValidationError("Enter a month as YYYY-MM, e.g. 2026-03.")
        return date(int(match[1]), int(match[2]), 1)

    def clean_by(self) -> str:
        return self.cleaned_data["by"] or "group"
