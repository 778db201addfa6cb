"""The self-service request form (checked in full before anything is created), and the
form that extends a workspace's lifetime."""

from datetime import timedelta

from django import forms

from pools import lifetime
from profiles.models import ServicesProfile


class WorkspaceRequestForm(forms.Form):
    """A workspace's name and, optionally, the services profile to deploy once it is ready.

    The services profile must be one the user may use: an unknown, unpublished or
    malformed value is refused here, so a refused request creates no workspace and names
    no profile the user may not see.
    """

    # The name is made one line (line breaks and control characters become spaces) and cut
    # to 60 characters when the workspace is created (`actions.request_workspace`).
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


class ExtendLifetimeForm(forms.Form):
    """How many hours later a workspace should expire, within its group's maximum."""

    hours = forms.IntegerField(
        min_value=1,
        max_value=24 * 365,
        label="Extend by (hours)",
        error_messages={"required": "Say by how many hours."},
    )

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        self.limit = lifetime.longest_extension(workspace)
        if self.limit is not None:
            self.fields["hours"].help_text = (
                f"Up to your group's maximum lifetime, {workspace.team.max_lifetime_hours} h "
                "from now."
            )

    def clean_hours(self) -> int:
        hours = self.cleaned_data["hours"]
        if self.limit is not None and timedelta(hours=hours) > self.limit:
            raise forms.ValidationError(lifetime.extension_limit_text(self.workspace, self.limit))
        return hours
