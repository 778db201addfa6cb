from profiles.forms.compute import ComputeProfileForm, ResourceGroupFormSet
from profiles.forms.infrastructure import InfrastructureForm
from profiles.forms.services import ServiceComponentFormSet, ServicesProfileForm

__all__ = [
    "ComputeProfileForm",
    "InfrastructureForm",
    "ResourceGroupFormSet",
    "ServiceComponentFormSet",
    "ServicesProfileForm",
]
