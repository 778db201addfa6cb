"""The self-service request form: checked in full before anything is created."""

from django import forms

from profiles.models import ServicesProfile


class WorkspaceRequestForm(forms.Form):
    """A workspace's name and, optionally, the services profile to deploy once it is ready.

    The services profile must be one the user may use: an unknown, unpublished or
    malformed value is refused here, so a refused request creates no workspace and names
    no profile the user may not see.
    """

    # Longer names are cut to 60 characters when the workspace is created (as before).
    name = forms.CharField(required=False)
    services_profile = forms.ModelChoiceField(
        queryset=ServicesProfile.objects.none(),
        required=False,
        error_messages={"invalid_choice": "Choose a services profile from the list."},
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["services_profile"].queryset = ServicesProfile.objects.usable_by(user)

    def refusal(self) -> str:
        """The errors as one sentence for the page's message."""
        return " ".join(
            f"{self.fields[name].label or name.replace('_', ' ').capitalize()}: {error}"
            for name, errors in self.errors.items()
            for error in errors
        )
