"""Users, invitations and SSO settings (Org admin changes; Viewer reads).

Each view opens with `require()`; writes go through the audit-logged functions in
`portal.users`, `portal.invitations` and `portal.sso`.
"""

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Prefetch, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from portal import audit, invitations, sso, tables
from portal import users as user_actions
from portal.models import (
    AuditAction,
    AuditEntry,
    Invitation,
    SsoConfiguration,
    SsoGroupMapping,
    Team,
)
from portal.roles import CHANGE, VIEW, Area, has_perm
from portal.tables import InvitationTable, UserTable
from portal.user_forms import (
    AcceptInvitationForm,
    InvitationForm,
    SsoConfigurationForm,
    SsoGroupMappingForm,
    UserAddForm,
    UserSearchForm,
)
from portal.views import sso as sso_views
from portal.views.generic import require

User = get_user_model()
PENDING_INVITATION_SESSION_KEY = "portal_invitation"


def _users_context(request) -> dict:
    return {"can_change": has_perm(request.user, Area.USERS, CHANGE)}


@login_required
def user_list(request: HttpRequest) -> HttpResponse:
    require(request.user, Area.USERS, VIEW)
    users = User.objects.order_by("username").prefetch_related(
        Prefetch("teams", queryset=Team.objects.order_by("name"))
    )
    search = UserSearchForm(request.GET)
    if search.is_valid():
        query = search.cleaned_data["q"]
        if query:
            users = users.filter(Q(username__icontains=query) | Q(email__icontains=query))
    else:
        query, users = "", users.none()
    counts = user_actions.active_workspace_counts(users)
    table = UserTable(users, workspace_counts=counts)
    if counts is None:
        table.columns.hide("active_workspaces")
    listing = tables.listing(table, request)
    return render(
        request, "portal/user_list.html", _users_context(request) | {"listing": listing, "q": query}
    )


@login_required
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    require(request.user, Area.USERS, VIEW)
    user = get_object_or_404(User, pk=pk)
    history = AuditEntry.objects.filter(
        content_type__app_label=User._meta.app_label,
        content_type__model=User._meta.model_name,
        object_id=str(user.pk),
    )[:20]
    sso_teams = set(user.sso_memberships.values_list("team_id", flat=True))
    context = _users_context(request) | {
        "object": user,
        "teams": [(team, team.pk in sso_teams) for team in user.teams.order_by("name")],
        "history": history,
        "sso_linked": user.socialaccount_set.exists(),
    }
    return render(request, "portal/user_detail.html", context)


@login_required
def user_add(request: HttpRequest) -> HttpResponse:
    require(request.user, Area.USERS, CHANGE)
    form = UserAddForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if data["send_invitation"]:
            _say_invited(request, invitations.invite(request.user, data["email"], data["groups"]))
            return redirect("portal:invitation_list")
        try:
            user = user_actions.add_user(
                request.user, data["username"], data["email"], data["groups"], data["password"]
            )
        except user_actions.UsernameTaken as taken:
            form.add_error("username", taken)
        except user_actions.EmailTaken as taken:
            form.add_error("email", taken)
        else:
            messages.success(request, f"Added user “{user.get_username()}”.")
            return redirect("portal:user_detail", pk=user.pk)
    return render(request, "portal/user_add.html", {"form": form})


@login_required
@require_POST
def user_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    require(request.user, Area.USERS, CHANGE)
    user = get_object_or_404(User, pk=pk, is_active=True)
    if user == request.user:
        messages.error(request, "You cannot deactivate your own account.")
        return redirect("portal:user_detail", pk=pk)
    try:
        ended = user_actions.deactivate(request.user, user)
    except user_actions.LastOrgAdmin as refused:
        messages.error(request, refused.message)
        return redirect("portal:user_detail", pk=pk)
    messages.success(request, f"Deactivated “{user.get_username()}”; {ended} session(s) ended.")
    return redirect("portal:user_detail", pk=pk)


@login_required
@require_POST
def user_reactivate(request: HttpRequest, pk: int) -> HttpResponse:
    require(request.user, Area.USERS, CHANGE)
    user = get_object_or_404(User, pk=pk, is_active=False)
    user_actions.reactivate(request.user, user)
    messages.success(request, f"Reactivated “{user.get_username()}”.")
    return redirect("portal:user_detail", pk=pk)


# -- invitations ------------------------------------------------------------------------------


@login_required
def invitation_list(request: HttpRequest) -> HttpResponse:
    require(request.user, Area.USERS, VIEW)
    queryset = (
        invitations.with_inviter_standing(Invitation.objects.for_user(request.user, VIEW))
        .select_related("invited_by")
        .prefetch_related("groups")
    )
    table = InvitationTable(queryset)
    if not has_perm(request.user, Area.USERS, CHANGE):
        table.columns.hide("actions")
    return render(
        request,
        "portal/invitation_list.html",
        _users_context(request) | {"listing": tables.listing(table, request)},
    )


@login_required
def invitation_add(request: HttpRequest) -> HttpResponse:
    require(request.user, Area.USERS, CHANGE)
    form = InvitationForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        _say_invited(request, invitations.invite(request.user, data["email"], data["groups"]))
        return redirect("portal:invitation_list")
    return render(request, "portal/invitation_add.html", {"form": form})


def _say_invited(request, invitation: Invitation) -> None:
    if invitation.sent_at:
        messages.success(request, f"Invitation sent to {invitation.email}.")
    else:
        messages.warning(
            request,
            f"Invitation to {invitation.email} created, but the email could not be sent; "
            "resend it.",
        )


def _pending_invitation(request, pk: int) -> Invitation:
    require(request.user, Area.USERS, CHANGE)
    return get_object_or_404(
        Invitation.objects.for_user(request.user, CHANGE),
        pk=pk,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
    )


@login_required
@require_POST
def invitation_resend(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = _pending_invitation(request, pk)
    invitations.resend(request.user, invitation)
    if invitation.sent_at:
        messages.success(
            request, f"Sent a new link to {invitation.email}; the old one no longer works."
        )
    else:
        messages.warning(
            request,
            f"A new link to {invitation.email} was made and the old one no longer works, but "
            "the email could not be sent; resend it.",
        )
    return redirect("portal:invitation_list")


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = _pending_invitation(request, pk)
    invitations.revoke(request.user, invitation)
    messages.success(request, f"Revoked the invitation of {invitation.email}.")
    return redirect("portal:invitation_list")


def invitation_accept(request: HttpRequest, pk: int, token: str) -> HttpResponse:
    """The page the emailed link opens: choose a username and password, or use SSO."""
    invitation, problem = invitations.check_link(pk, token)
    if problem:
        status, message = problem.value
        return render(
            request, "portal/invitation_invalid.html", {"message": message}, status=status
        )
    config = SsoConfiguration.load()
    password_allowed = not (config.is_usable and config.local_login_disabled)
    form = AcceptInvitationForm(request.POST or None, email=invitation.email)
    context = {
        "invitation": invitation,
        "form": form,
        "sso": config,
        "password_allowed": password_allowed,
    }
    if request.method == "POST" and request.POST.get("sso") and config.is_usable:
        # The SSO login finishes the invitation (see PortalSocialAccountAdapter).
        request.session[PENDING_INVITATION_SESSION_KEY] = [invitation.pk, token]
        return sso_views.login(request, sso.PROVIDER_ID)
    if request.method == "POST" and not request.POST.get("sso"):
        if not password_allowed:
            # The page offers no password form then; a posted one is refused all the same.
            messages.error(
                request,
                f"Password login is turned off for this portal. Continue with "
                f"{config.display_name} instead.",
            )
            return render(request, "portal/invitation_accept.html", context, status=403)
        if form.is_valid():
            accepted = _accept_with_password(request, invitation, form)
            if accepted:
                return accepted
    return render(request, "portal/invitation_accept.html", context)


def _accept_with_password(
    request: HttpRequest, invitation: Invitation, form: AcceptInvitationForm
) -> HttpResponse | None:
    """Create the invitee's account, join the invited groups and log them in. None when
    someone took the username since the form checked it: the form then says so."""
    try:
        with transaction.atomic():
            user = user_actions.create_user(
                form.cleaned_data["username"], invitation.email, form.cleaned_data["password1"]
            )
            user_actions.record_verified_email(user)
            audit.record(user, AuditAction.CREATED, user, after=user_actions.user_snapshot(user))
            if not invitations.accept(invitation, user):
                transaction.set_rollback(True)
                return render(
                    request,
                    "portal/invitation_invalid.html",
                    {"message": invitations.LinkProblem.USED.value[1]},
                    status=410,
                )
    except user_actions.UsernameTaken as taken:
        form.add_error("username", taken)
        return None
    except user_actions.EmailTaken as taken:  # the invitation's address: not a form field
        form.add_error(None, taken)
        return None
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, "Welcome! Your account is ready.")
    return redirect("workspaces:self_service")


@login_required
@require_GET
def email_addresses(request: HttpRequest) -> HttpResponse:
    """Replaces allauth's email page (adding addresses): addresses are the administrators'.

    An address decides which Okta login may sign into an account, so a user who could add
    someone else's address (and get it confirmed) could collect that person's Okta login
    and groups. Administrators set it when they add or invite a user.
    """
    addresses = request.user.emailaddress_set.order_by("-primary", "email")
    return render(request, "portal/email_addresses.html", {"addresses": addresses})


# -- SSO --------------------------------------------------------------------------------------


@login_required
def sso_settings(request: HttpRequest) -> HttpResponse:
    require(request.user, Area.USERS, VIEW)
    config = SsoConfiguration.load()
    can_change = has_perm(request.user, Area.USERS, CHANGE)
    form = SsoConfigurationForm(instance=config, user=request.user)
    if request.method == "POST":
        require(request.user, Area.USERS, CHANGE)
        # A bound form writes what was posted onto its instance even when it refuses it, so
        # it edits a copy: the page's status keeps saying what is stored.
        edited = SsoConfiguration.load()
        tracker = audit.ChangeTracker(edited)
        form = SsoConfigurationForm(request.POST, instance=edited, user=request.user)
        if form.is_valid():
            with transaction.atomic():
                form.save()
                tracker.record(request.user)
            messages.success(request, "Saved the SSO settings.")
            return redirect("portal:sso_settings")
    context = {
        "form": form,
        "config": config,
        "can_change": can_change,
        "mappings": SsoGroupMapping.objects.select_related("team"),
        "mapping_form": SsoGroupMappingForm(),
        "callback_url": request.build_absolute_uri(
            reverse("openid_connect_callback", args=[sso.PROVIDER_ID])
        ),
    }
    return render(request, "portal/sso_settings.html", context)


@login_required
@require_POST
def sso_mapping_add(request: HttpRequest) -> HttpResponse:
    require(request.user, Area.USERS, CHANGE)
    form = SsoGroupMappingForm(request.POST)
    if form.is_valid():
        with transaction.atomic():
            mapping = form.save()
            audit.record_created(request.user, mapping)
        messages.success(request, f"Mapped Okta group “{mapping.sso_group}” to “{mapping.team}”.")
    else:
        messages.error(request, "Give an Okta group name and a portal group not mapped yet.")
    return redirect("portal:sso_settings")


@login_required
@require_POST
def sso_mapping_delete(request: HttpRequest, pk: int) -> HttpResponse:
    require(request.user, Area.USERS, CHANGE)
    mapping = get_object_or_404(SsoGroupMapping.objects.for_user(request.user, CHANGE), pk=pk)
    with transaction.atomic():
        audit.record_deleted(request.user, mapping, audit.snapshot(mapping))
        mapping.delete()
    messages.success(request, f"Removed the mapping “{mapping}”. It takes effect at next login.")
    return redirect("portal:sso_settings")


def sso_no_access(request: HttpRequest) -> HttpResponse:
    """Where a login without any group that gives access ends: nothing to do but ask an
    admin. Anonymous: an SSO login refused an account; signed in: a user in no group."""
    user = request.user
    via_sso = not user.is_authenticated or user.socialaccount_set.exists()
    return render(request, "portal/sso_no_access.html", {"via_sso": via_sso}, status=403)
