"""Forms of the user, invitation and SSO pages."""

import re

from django import forms
from django.contrib.auth import get_user_model, password_validation

from portal import sso
from portal import users as user_actions
from portal.forms import PortalFormMixin, SecretFieldsMixin, SecretInput
from portal.models import SsoConfiguration, SsoGroupMapping, Team
from portal.roles import CHANGE, Area, has_perm


def _groups_field() -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        queryset=Team.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )


# The longest address User.email and Invitation.email can store (RFC 5321's path limit);
# forms.EmailField alone would accept up to 320 characters.
EMAIL_MAX_LENGTH = 254


def _clean_new_username(raw: str) -> str:
    """The username as it will be stored, checked: valid, short enough and not taken.

    Django stores a username NFKC-normalised (create_user does it), so the checks run on that
    form: a fullwidth "ＯＬＧＡ" is stored as "OLGA", which the break-glass login, looking
    names up case-insensitively, could no longer tell from "olga"; and a ligature such as
    U+FDFA grows to 18 characters.
    """
    user_model = get_user_model()
    username = user_model.normalize_username(raw).strip()
    max_length = user_model._meta.get_field(user_model.USERNAME_FIELD).max_length
    if len(username) > max_length:
        raise forms.ValidationError(
            f"A username has at most {max_length} characters as stored; this one becomes "
            f"{len(username)} (some characters, such as ligatures, count as several)."
        )
    user_model.username_validator(username)
    if user_model.objects.filter(username__iexact=username).exists():
        raise user_actions.UsernameTaken()
    return username


def _clean_unique_email(email: str) -> str:
    """The address lowercased, if no account has it in any case (as portal 0010's index
    compares it)."""
    email = email.strip().lower()
    if get_user_model().objects.filter(email__iexact=email).exists():
        raise user_actions.EmailTaken()
    return email


class UserAddForm(PortalFormMixin, forms.Form):
    fieldsets = [
        ("User", ["username", "email", "groups"], ""),
        ("Sign-in", ["send_invitation", "password"], ""),
    ]
    username = forms.CharField(max_length=150)
    email = forms.EmailField(max_length=EMAIL_MAX_LENGTH)
    groups = _groups_field()
    send_invitation = forms.BooleanField(
        required=False,
        label="Send an invitation instead",
        help_text="The person gets an email link and chooses their own username and password.",
    )
    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput,
        help_text="Optional. Leave blank for a user who signs in only with SSO.",
    )

    def clean_username(self) -> str:
        return _clean_new_username(self.cleaned_data["username"])

    def clean_email(self) -> str:
        return _clean_unique_email(self.cleaned_data["email"])

    def clean(self):
        data = super().clean()
        password = data.get("password")
        if password and data.get("send_invitation"):
            self.add_error("password", "An invited user chooses their own password.")
        elif password:
            candidate = get_user_model()(username=data.get("username"), email=data.get("email"))
            try:
                password_validation.validate_password(password, candidate)
            except forms.ValidationError as error:
                self.add_error("password", error)
        return data


class InvitationForm(PortalFormMixin, forms.Form):
    fieldsets = [("Invitation", ["email", "groups"], "")]
    email = forms.EmailField(max_length=EMAIL_MAX_LENGTH)
    groups = _groups_field()

    def clean_email(self) -> str:
        return _clean_unique_email(self.cleaned_data["email"])


class AcceptInvitationForm(forms.Form):
    username = forms.CharField(max_length=150)
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput)
    password2 = forms.CharField(label="Password (again)", widget=forms.PasswordInput)

    def __init__(self, *args, email: str, **kwargs):
        self.email = email
        super().__init__(*args, **kwargs)

    def clean_username(self) -> str:
        return _clean_new_username(self.cleaned_data["username"])

    def clean(self):
        data = super().clean()
        if self.email and get_user_model().objects.filter(email__iexact=self.email).exists():
            raise forms.ValidationError("An account with this email address already exists.")
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The two passwords differ.")
        elif p1:
            candidate = get_user_model()(username=data.get("username", ""), email=self.email)
            try:
                password_validation.validate_password(p1, candidate)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return data


SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


class SsoConfigurationForm(PortalFormMixin, SecretFieldsMixin, forms.ModelForm):
    fieldsets = [
        (
            "Okta (OpenID Connect)",
            ["enabled", "display_name", "issuer", "client_id", "client_secret", "scopes"],
            "",
        ),
        ("Password login", ["local_login_disabled", "break_glass_usernames", "lock_me_out"], ""),
    ]
    secret_fields = ("client_secret",)
    issuer = forms.URLField(
        label="Issuer URL",
        required=False,
        assume_scheme="https",
        help_text=SsoConfiguration._meta.get_field("issuer").help_text,
    )
    lock_me_out = forms.BooleanField(
        required=False,
        label="Turn password login off for me too",
        help_text="Needed only if you are not on the break-glass list and have never logged "
        "in with Okta: you could then no longer log in at all.",
    )

    class Meta:
        model = SsoConfiguration
        fields = [
            "enabled",
            "display_name",
            "issuer",
            "client_id",
            "client_secret",
            "scopes",
            "local_login_disabled",
            "break_glass_usernames",
        ]
        widgets = {"client_secret": SecretInput()}

    def clean(self):
        data = super().clean()
        if self._issuer_changed(data):
            # The stored secret belongs to the old issuer. Kept, the next login would send it
            # to the new issuer's token endpoint, to whoever runs that: a blank field drops it.
            stored = self.instance.client_secret
            if stored and data.get("enabled") and not data.get("client_secret"):
                self.add_error(
                    "client_secret",
                    "The issuer changed: enter the client secret the new issuer gave the "
                    "portal. The stored one is never sent to another issuer.",
                )
        else:
            self._keep_stored_secrets(data)
        if data.get("enabled"):
            for name in ("issuer", "client_id", "client_secret"):
                if not data.get(name) and name not in self.errors:
                    self.add_error(name, "Required to turn SSO on.")
            if data.get("issuer") and "issuer" not in self.errors:
                try:
                    sso.discover(data["issuer"])
                except sso.IssuerProblem as problem:
                    self.add_error("issuer", f"{problem} Nothing was saved: SSO stays as it was.")
        if data.get("local_login_disabled"):
            if not data.get("enabled"):
                self.add_error("local_login_disabled", "Turn SSO on first.")
            if not data.get("break_glass_usernames", "").strip():
                self.add_error(
                    "break_glass_usernames",
                    "Name at least one break-glass administrator, or nobody could log in "
                    "if Okta is down.",
                )
            elif "break_glass_usernames" in data and self._locks_out_saver(data):
                self.add_error(
                    "lock_me_out",
                    "You are not on the break-glass list and have never logged in with Okta: "
                    "once you log out you could not log in again. Add your username to the "
                    "list, log in with Okta once first, or tick this box to go ahead.",
                )
        return data

    def clean_scopes(self) -> str:
        """Scope tokens as OAuth 2.0 allows them (RFC 6749 3.3), `openid` among them."""
        tokens = self.cleaned_data["scopes"].split()
        if bad := [t for t in tokens if not SCOPE_TOKEN.fullmatch(t)]:
            raise forms.ValidationError(f"Not a scope: {bad[0][:40]!r}.")
        if "openid" not in tokens:
            raise forms.ValidationError("Keep “openid”: without it Okta sends no ID token.")
        return " ".join(dict.fromkeys(tokens))

    def clean_break_glass_usernames(self) -> str:
        """Only active Org admins: a break-glass login exists to manage the portal."""
        value = self.cleaned_data["break_glass_usernames"]
        users = get_user_model().objects
        wrong = []
        for name in dict.fromkeys(n.strip() for n in value.split(",") if n.strip()):
            user = users.filter(username__iexact=name).first()
            if user is None or not has_perm(user, Area.USERS, CHANGE):
                wrong.append(name)
        if wrong:
            raise forms.ValidationError(
                "Only active Org admins can be break-glass administrators, so not: "
                + ", ".join(wrong)
                + "."
            )
        return value

    def _issuer_changed(self, data) -> bool:
        """Whether the form names another issuer than the stored one (not: the issuer field is
        invalid, which refuses the form anyway)."""
        if "issuer" not in data:
            return False
        return data["issuer"].rstrip("/") != self.instance.issuer.rstrip("/")

    def _locks_out_saver(self, data) -> bool:
        """Whether the admin saving the form would lose every way to log in."""
        if self.user is None or data.get("lock_me_out"):
            return False
        names = {n.strip().lower() for n in data["break_glass_usernames"].split(",")}
        if self.user.get_username().lower() in names:
            return False
        return not self.user.socialaccount_set.exists()


class SsoGroupMappingForm(forms.ModelForm):
    class Meta:
        model = SsoGroupMapping
        fields = ["sso_group", "team"]
        labels = {"team": "Portal group"}


class UserSearchForm(forms.Form):
    """The user list's search box. A NUL byte or an overlong value matches nobody."""

    q = forms.CharField(required=False, max_length=254)
