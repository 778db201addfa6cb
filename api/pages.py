"""The API tokens page: create a token (shown once), see and revoke your tokens; Org admins
see and revoke everyone's. Creating and revoking are audited (`api.tokens`)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from api import tokens
from api.models import ApiToken
from api.token_forms import TokenForm
from portal.roles import CHANGE, VIEW, Area, has_perm


def _render(request, form: TokenForm, created: str = "", status: int = 200):
    mine = ApiToken.objects.filter(user=request.user)
    everyone = None
    if has_perm(request.user, Area.USERS, VIEW):
        everyone = ApiToken.objects.for_user(request.user, VIEW).select_related("user")
    context = {
        "form": form,
        "created": created,
        "tokens": mine,
        "everyone": everyone,
        "can_revoke_all": has_perm(request.user, Area.USERS, CHANGE),
    }
    return render(request, "api/token_list.html", context, status=status)


@login_required
@require_GET
def token_list(request):
    return _render(request, TokenForm())


@login_required
@require_POST
@never_cache  # the page carries the token's plaintext: no copy in any cache
def token_add(request):
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _render(request, form)
    data = form.cleaned_data
    _, plaintext = tokens.create_token(request.user, data["name"], data["scope"], data["days"])
    # Rendered, not redirected: the plaintext never goes into the session or a message.
    return _render(request, TokenForm(), created=plaintext)


@login_required
@require_POST
def token_revoke(request, pk: int):
    token = get_object_or_404(ApiToken.objects.for_user(request.user, CHANGE), pk=pk)
    if tokens.revoke_token(request.user, token):
        messages.success(request, f"Revoked the API token “{token.name}”.")
    return redirect("api:token_list")
