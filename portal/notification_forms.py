"""The form of a user's own notification choices: per kind, by email and in the portal."""

from django import forms


class NotificationChoicesForm(forms.Form):
    """Two checkboxes per kind the user may get (`notifications.kinds_for`)."""

    def __init__(self, *args, kinds: list[tuple[str, str]], current: dict, **kwargs):
        """`current`: `notifications.stored_preferences(user)`."""
        super().__init__(*args, **kwargs)
        self.kinds = kinds
        for kind, _label in kinds:
            chosen = current.get(kind, {})
            email, in_portal = chosen.get("email", True), chosen.get("in_portal", True)
            self.fields[f"{kind}-email"] = forms.BooleanField(
                label="by email", required=False, initial=email
            )
            self.fields[f"{kind}-portal"] = forms.BooleanField(
                label="in the portal", required=False, initial=in_portal
            )

    def rows(self):
        """(label, email field, portal field) per kind, for the table."""
        return [
            (label, self[f"{kind}-email"], self[f"{kind}-portal"]) for kind, label in self.kinds
        ]

    def choices(self) -> dict[str, tuple[bool, bool]]:
        data = self.cleaned_data
        return {kind: (data[f"{kind}-email"], data[f"{kind}-portal"]) for kind, _ in self.kinds}
