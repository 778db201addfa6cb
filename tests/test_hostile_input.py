"""Every URL of the portal × every role × hostile input: never a 5xx, and a request that is
refused or fails changes no row.

The URLs, the roles, who may open what, and the objects a URL needs come from the permission
matrix (`tests/test_permission_matrix.py`), so a new page is covered here as soon as it has its
entry there. For each URL, once for all roles:

1. The URL's objects are made (the matrix's factory) and one client per role logs in.
2. Each request runs in a savepoint that is rolled back afterwards, so every request sees
   the same objects (a Delete does not hide the page from the next request) and nothing a
   request wrote leaks into the next. The rows of every model are counted before and after
   (one query): a GET, a refusal (401/403/404/405, the login page, a redirect that carries
   only an error message) or a failed form (a POST answered 200) must leave every count as
   it was.
3. The Org admin (or, where the matrix refuses them, the first role it lets in) gets the
   full set: the page as is (its forms are read from the HTML: their fields, kinds, options
   and current values); for each hostile value, a POST with every field and every query
   parameter hostile, and, on a page without a form of its own (a list, a detail), a GET
   with every query parameter hostile; each option of a small choice (up to 5 options, e.g.
   an infrastructure's kind, which decides which checks run) with every other field
   hostile; and POSTs with one field hostile and the others as the page filled them, so the
   checks behind a valid form are reached too. The other roles the matrix lets in get one
   hostile GET and one hostile POST; the roles it refuses get one hostile POST.

Hostile values are chosen per field kind rather than crossed with each other: NUL bytes,
Unicode digits ("²" passes `str.isdigit()` but not `int()`), 10,000-character strings,
2**63 and -1, YAML of the wrong type (the kubeconfig shapes reported in issue 11), unknown
choices and dates that do not exist.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.messages import constants as message_levels
from django.contrib.messages import get_messages
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from pools.models import Workspace
from portal.models import SsoConfiguration
from profiles.choices import InfrastructureKind
from profiles.models import ComputeProfile, Infrastructure, PartitioningStrategy, ServicesProfile
from tests.conftest import RUN_SUMMARY
from tests.test_permission_matrix import (
    ADMIN,
    ANON,
    EXPECTED,
    ROLES,
    URLS,
    PortalUrl,
    _factory_for,
    people,  # noqa: F401  (the matrix's fixture: one user per role)
)

User = get_user_model()

# -- hostile values ---------------------------------------------------------------------------

NUL = "a\x00b"
SUPERSCRIPT_TWO = "²"  # "²".isdigit() is true, int("²") raises
LONG = "x" * 10_000
TOO_BIG = str(2**63)
NEGATIVE = "-1"
UNKNOWN_CHOICE = "no-such-choice"
# YAML of the wrong types: kubeconfigs complete but for one part (the shapes reported in
# issue 11, and a user whose credential is a command to run).
_CLUSTERS = (
    "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://k:6443'}}]\n"
)
_USERS = "users: [{name: u, user: {token: t}}]\n"
_CONTEXTS = "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
YAML_WRONG_TYPES = [
    _CLUSTERS + _USERS + "contexts: 7\ncurrent-context: x\n",
    _CLUSTERS + _USERS + "contexts: [{name: [1]}]\ncurrent-context: x\n",
    _CLUSTERS + _USERS + "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    "current-context: [1]\n",
    _CLUSTERS
    + "users: [{name: u, user: {exec: {command: /bin/sh, args: ['-c', 'id']}}}]\n"
    + _CONTEXTS,
]

# Each list is in the order the variants use it (the most telling first); with every field
# hostile at once, variant v gives every field value v of its kind's list.
TEXT = [NUL, LONG, SUPERSCRIPT_TWO, TOO_BIG, YAML_WRONG_TYPES[0], NEGATIVE]
NUMBER = [SUPERSCRIPT_TWO, NUL, TOO_BIG, NEGATIVE, "NaN", "1e999"]
CHOICE = [SUPERSCRIPT_TWO, NUL, TOO_BIG, NEGATIVE, UNKNOWN_CHOICE, LONG]
TEXTAREA = [*YAML_WRONG_TYPES, NUL, LONG]
FLAG = [SUPERSCRIPT_TWO, NUL, LONG]
WHEN = ["25:61", "2026-02-30", NUL, SUPERSCRIPT_TWO, TOO_BIG, NEGATIVE]
QUERY = [SUPERSCRIPT_TWO, NUL, TOO_BIG, NEGATIVE, LONG, UNKNOWN_CHOICE]
ROTATIONS = 6  # the longest list: every field meets every value of its kind

VALUES_BY_KIND = {
    "text": TEXT,
    "number": NUMBER,
    "select": CHOICE,
    "textarea": TEXTAREA,
    "checkbox": FLAG,
    "radio": CHOICE,
    "time": WHEN,
    "date": WHEN,
    "datetime-local": WHEN,
    "hidden": NUMBER,  # formset management forms and ids
}

# Query parameters the views read (besides their filter forms, read from the page).
QUERY_NAMES = ["q", "page", "sort", "infrastructure", "profile", "gpu_model", "per_page"]
# Fields POST-only actions read (their forms live on another page).
POST_NAMES = {
    "name": "text",
    "services_profile": "select",
    "node": "text",
    "draining": "text",
    "user": "select",
    "sso_group": "text",
    "team": "select",
    "sso": "checkbox",
    "email": "text",
    "username": "text",
    "password1": "text",
    "password2": "text",
}

REFUSED = {
    HTTPStatus.BAD_REQUEST,
    HTTPStatus.UNAUTHORIZED,
    HTTPStatus.FORBIDDEN,
    HTTPStatus.NOT_FOUND,
    HTTPStatus.METHOD_NOT_ALLOWED,
    HTTPStatus.GONE,
}


# -- reading the forms of a page --------------------------------------------------------------


@dataclass
class FormField:
    name: str
    kind: str
    value: str | None  # what the page would submit; None: nothing (unchecked box)
    options: list[str] = field(default_factory=list)  # of a select or a radio group


@dataclass
class PageForm:
    method: str
    action: str
    fields: list[FormField] = field(default_factory=list)


class _FormParser(HTMLParser):
    """The forms of a page: their method, action, and fields with kind and current value."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[PageForm] = []
        self._form: PageForm | None = None
        self._select: FormField | None = None
        self._first_option: str | None = None
        self._textarea: FormField | None = None
        self._in_template = 0

    def handle_starttag(self, tag, attrs):
        a = {k: v if v is not None else "" for k, v in attrs}
        if tag == "template":
            self._in_template += 1  # formset rows added by script: not submitted as is
        if self._in_template:
            return
        if tag == "form":
            self._form = PageForm(a.get("method", "get").lower(), a.get("action", ""))
            self.forms.append(self._form)
        elif self._form is None or (not a.get("name") and tag != "option"):
            return
        elif tag == "input":
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "reset", "image", "file"):
                return
            if kind in ("checkbox", "radio"):
                value = a.get("value", "on") if "checked" in a else None
            else:
                value = a.get("value", "")
            if kind in ("email", "url", "password", "search", "tel"):
                kind = "text"
            options = [a.get("value", "on")] if kind == "radio" else []
            self._form.fields.append(FormField(a["name"], kind, value, options))
        elif tag == "select":
            self._select = FormField(a["name"], "select", None)
            self._first_option = None
            self._form.fields.append(self._select)
        elif tag == "option" and self._select is not None:
            value = a.get("value", "")
            self._select.options.append(value)
            if self._first_option is None:
                self._first_option = value
            if "selected" in a:
                self._select.value = value
        elif tag == "textarea":
            self._textarea = FormField(a["name"], "textarea", "")
            self._form.fields.append(self._textarea)

    def handle_endtag(self, tag):
        if tag == "template":
            self._in_template -= 1
        elif tag == "form":
            self._form = None
        elif tag == "select" and self._select is not None:
            if self._select.value is None:
                self._select.value = self._first_option
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea.value += data.lstrip("\n") if not self._textarea.value else data


def page_forms(html: str) -> list[PageForm]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def forms_posting_to(forms: list[PageForm], path: str) -> list[FormField]:
    """The fields of the page's POST forms whose action is this page itself."""
    fields: dict[str, FormField] = {}
    for form in forms:
        if form.method == "post" and urlsplit(form.action).path in ("", path):
            for item in form.fields:
                known = fields.setdefault(item.name, item)
                if known is not item and item.kind == "radio":  # one more button of a group
                    known.options += item.options
                    known.value = item.value if item.value is not None else known.value
    fields.pop("csrfmiddlewaretoken", None)
    return list(fields.values())


# -- requests ----------------------------------------------------------------------------------


def _models():
    """Every model whose rows a request could create: ours, users, addresses, SSO links and
    django-q2's queue (sessions change with every login and are left out)."""
    wanted = {"portal", "profiles", "pools", "services", "workspaces", "auth", "account"}
    wanted |= {"socialaccount", "django_q"}
    return [
        model
        for model in apps.get_models()
        if model._meta.app_label in wanted and model._meta.managed and not model._meta.proxy
    ]


def _count_sql() -> tuple[str, list[str]]:
    tables = sorted({model._meta.db_table for model in _models()})
    parts = [f"(SELECT COUNT(*) FROM {connection.ops.quote_name(t)})" for t in tables]
    return f"SELECT {', '.join(parts)}", tables


class Prober:
    """Sends requests for one URL, keeps the findings, counts the requests."""

    def __init__(self, url: PortalUrl, kwargs: dict):
        self.url = url
        self.rule = EXPECTED[url.name]
        self.path = reverse(url.name, kwargs=kwargs)
        self.sql, self.tables = _count_sql()
        self.findings: list[str] = []
        self.requests = 0

    def counts(self) -> tuple:
        with connection.cursor() as cursor:
            cursor.execute(self.sql)
            return cursor.fetchone()

    def send(self, client: Client, role: str, method: str, data: dict, label: str, query: str = ""):
        """One request in a savepoint rolled back afterwards; returns the response or None."""
        self.requests += 1
        cookies = copy.deepcopy(client.cookies)  # a POST may log the client in or out
        response = None
        path = f"{self.path}?{query}" if query else self.path
        try:
            with transaction.atomic():
                before = self.counts()
                try:
                    response = getattr(client, method)(path, data)
                except Exception as error:  # a 500: report it and go on
                    self._report(role, method, label, f"500 ({type(error).__name__}: {error})")
                else:
                    self._check(role, method, label, response, before)
                transaction.set_rollback(True)
        finally:
            client.cookies = cookies
        return response

    def _check(self, role, method, label, response, before) -> None:
        status = response.status_code
        # A 5xx is a finding, unless the page answers it by design (/readyz: 503).
        if status >= 500 and status != self.rule.expected(role):
            self._report(role, method, label, f"{status}")
            return
        if not self._must_change_nothing(method, response):
            return
        after = self.counts()
        if after != before:
            changed = [
                f"{table} {old}→{new}"
                for table, old, new in zip(self.tables, before, after, strict=True)
                if old != new
            ]
            self._report(role, method, label, f"{status}, yet changed rows: {changed}")

    def _must_change_nothing(self, method: str, response) -> bool:
        status = response.status_code
        if method == "get" or status in REFUSED:
            return True
        if status == HTTPStatus.FOUND:
            if response["Location"].startswith(reverse("account_login")):
                return True
            levels = {m.level for m in get_messages(response.wsgi_request)}
            return message_levels.ERROR in levels and message_levels.SUCCESS not in levels
        return status == HTTPStatus.OK  # a form shown again with its errors

    def _report(self, role: str, method: str, label: str, what: str) -> None:
        self.findings.append(f"{role} {method.upper()} {self.path} [{label}]: {what}")


def _hostile(kind: str, index: int) -> str:
    values = VALUES_BY_KIND.get(kind, TEXT)
    return values[index % len(values)]


def _all_hostile(fields: dict[str, str], variant: int) -> dict:
    """Every field hostile at once, each with value `variant` of its kind's list."""
    return {name: _hostile(kind, variant) for name, kind in fields.items()}


def _query(names: list[str], variant: int) -> str:
    """Every parameter hostile at once, with value `variant` of QUERY."""
    return urlencode(dict.fromkeys(names, QUERY[variant % len(QUERY)]))


def _one_hostile(baseline: dict, fields: dict[str, str]) -> Iterator[tuple[str, dict]]:
    """The page's own values with one field hostile; the value rotates with the field."""
    for position, (name, kind) in enumerate(fields.items()):
        yield name, baseline | {name: _hostile(kind, position)}


def _allowed(rule, role: str) -> bool:
    return rule.expected(role) in (HTTPStatus.OK, HTTPStatus.FOUND)


@pytest.fixture
def clients(people) -> dict:  # noqa: F811
    made = {ANON: Client()}
    for role in ROLES[1:]:
        made[role] = Client()
        made[role].force_login(people[role])
    return made


@pytest.fixture(autouse=True)
def _quiet_outside_world(settings):
    # No AWS call may leave the machine: a wrong endpoint fails at once.
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"


def _thorough_role(rule) -> str | None:
    """The role that gets every variant: the Org admin, else the first role let in."""
    allowed = [role for role in ROLES if _allowed(rule, role)]
    return ADMIN if ADMIN in allowed else next(iter(allowed), None)


def _probe(url: PortalUrl, people, clients) -> Prober:  # noqa: F811
    """The plan of the module docstring, for one URL."""
    rule = EXPECTED[url.name]
    SsoConfiguration.load()  # made lazily by some pages: not a row a request creates
    made = _factory_for(url.name)(people) if url.arguments else {}
    prober = Prober(url, {name: made[name] for name in url.arguments})
    post_fields = dict(POST_NAMES) | {name: "text" for name in rule.data}
    thorough = _thorough_role(rule)
    for role in ROLES:
        client = clients[role]
        if not _allowed(rule, role):
            data, query = _all_hostile(post_fields, 0), _query(QUERY_NAMES, 1)
            prober.send(client, role, "post", data, "refused: all hostile", query)
            continue
        if role != thorough:
            prober.send(client, role, "get", {}, "hostile query", _query(QUERY_NAMES, 0))
            data, query = _all_hostile(post_fields, 1), _query(QUERY_NAMES, 1)
            prober.send(client, role, "post", data, "all hostile", query)
            continue
        _probe_thoroughly(prober, client, role, rule, post_fields)
    return prober


def _probe_thoroughly(prober: Prober, client: Client, role: str, rule, post_fields) -> None:
    fields, baseline = dict(post_fields), dict(rule.data)
    own: list[FormField] = []
    query_names = list(QUERY_NAMES)
    if rule.method == "get":
        page = prober.send(client, role, "get", {}, "as is")
        if page is not None and page.status_code == HTTPStatus.OK and page.content:
            forms = page_forms(page.content.decode(errors="replace"))
            for form in forms:
                if form.method == "get":
                    query_names += [f.name for f in form.fields]
            page_fields = forms_posting_to(forms, prober.path)
            own = [f for f in page_fields if _worth_alone(f.name)]
            fields |= {f.name: f.kind for f in page_fields}
            baseline |= {f.name: f.value for f in page_fields if f.value is not None}
    for variant in range(ROTATIONS):
        query = _query(query_names, variant)
        if not own:  # a list or a detail page: its query string is what it reads
            prober.send(client, role, "get", {}, f"hostile query {variant}", query)
        data = _all_hostile(fields, variant)
        prober.send(client, role, "post", data, f"all hostile {variant}", query)
    # A small choice often decides which checks run (an infrastructure's kind, a group's
    # role): each of its options, with every other field hostile. The form's first such
    # choice meets every rotation of hostile values, the others one.
    swept = [item for item in own if _small_choice(item)]
    for position, item in enumerate(swept):
        variants = range(ROTATIONS) if position == 0 else [0]
        for index, option in enumerate(o for o in item.options if o):
            for variant in variants:
                data = _all_hostile(fields, index + variant) | {item.name: option}
                label = f"{item.name}={option}, rest hostile {variant}"
                prober.send(client, role, "post", data, label)
    one_at_a_time = dict.fromkeys(rule.data, "text") | {f.name: f.kind for f in own}
    for name, data in _one_hostile(baseline, one_at_a_time):
        prober.send(client, role, "post", data, f"only {name} hostile")


def _small_choice(item: FormField) -> bool:
    return item.kind in ("select", "radio") and 2 <= len([o for o in item.options if o]) <= 5


def _worth_alone(name: str) -> bool:
    """Fields of the second and later rows of a formset repeat the first row's; of the
    management form only the row count is read."""
    return not re.search(r"-[1-9][0-9]*-|-(INITIAL|MIN_NUM|MAX_NUM)_FORMS$", name)


@pytest.mark.django_db
@pytest.mark.parametrize("url", [u for u in URLS if u.name in EXPECTED], ids=lambda u: u.name)
def test_hostile_input_never_errs_and_a_refusal_changes_nothing(
    url: PortalUrl,
    people,  # noqa: F811
    clients,
):
    prober = _probe(url, people, clients)
    RUN_SUMMARY["hostile-input requests (tests/test_hostile_input.py)"] = (
        RUN_SUMMARY.get("hostile-input requests (tests/test_hostile_input.py)", 0) + prober.requests
    )
    assert not prober.findings, f"{url.name}:\n  " + "\n  ".join(prober.findings)


# -- the causes found in issue 11, one by one ---------------------------------------------------


@pytest.fixture
def starter(db) -> ComputeProfile:
    infrastructure = Infrastructure.objects.create(name="Here", kind=InfrastructureKind.LOCAL)
    profile = ComputeProfile.objects.create(
        name="Starter", infrastructure=infrastructure, published=True
    )
    profile.resource_groups.create(position=0, gpu_model="", gpu_count=0)
    return profile


@pytest.mark.parametrize("services_profile", [SUPERSCRIPT_TWO, TOO_BIG, NUL, "0"])
def test_a_malformed_services_profile_refuses_the_request_and_creates_nothing(
    client, member, starter, services_profile
):
    client.force_login(member)
    response = client.post(
        reverse("workspaces:request", args=[starter.pk]),
        {"name": "notebook", "services_profile": services_profile},
    )
    assert response.status_code == HTTPStatus.FOUND
    assert not Workspace.objects.exists()
    assert "Not requested. Services profile:" in str(list(get_messages(response.wsgi_request)))


def test_an_unpublished_services_profile_is_refused_without_naming_it(client, member, starter):
    secret = ServicesProfile.objects.create(
        name="Project Nightingale", slug="nightingale", published=False
    )
    client.force_login(member)
    response = client.post(
        reverse("workspaces:request", args=[starter.pk]), {"services_profile": secret.pk}
    )
    messages = str(list(get_messages(response.wsgi_request)))
    assert "Nightingale" not in messages
    assert not Workspace.objects.exists()


def test_a_nul_byte_in_a_workspace_name_is_refused(client, member, starter):
    client.force_login(member)
    response = client.post(reverse("workspaces:request", args=[starter.pk]), {"name": NUL})
    assert response.status_code == HTTPStatus.FOUND
    assert not Workspace.objects.exists()


def test_a_nul_byte_in_the_user_search_matches_nobody(admin_client, member):
    response = admin_client.get(reverse("portal:user_list"), {"q": NUL})
    assert response.status_code == HTTPStatus.OK
    assert b"No users" in response.content


def test_a_nul_byte_in_a_node_name_on_drain_is_refused(admin_client):
    infrastructure = Infrastructure.objects.create(name="DC", kind=InfrastructureKind.LOCAL)
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure, gpu_model="A100-40GB", nodes="gpu-1"
    )
    response = admin_client.post(
        reverse("partitioning:drain", args=[strategy.pk]), {"node": "gpu\x00-1", "draining": "1"}
    )
    assert response.status_code == HTTPStatus.FOUND
    assert not strategy.node_states.exists()


@pytest.mark.parametrize("value", [SUPERSCRIPT_TWO, TOO_BIG, NUL, "٣", "-1"])
def test_odd_ids_in_the_add_partitioning_and_add_schedule_links_are_ignored(admin_client, value):
    partitioning = admin_client.get(
        reverse("profiles:partitioningstrategy_add"), {"infrastructure": value}
    )
    schedule = admin_client.get(reverse("pools:poolschedule_add"), {"profile": value})
    assert partitioning.status_code == HTTPStatus.OK
    assert schedule.status_code == HTTPStatus.OK
