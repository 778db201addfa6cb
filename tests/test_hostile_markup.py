"""Every GET page of the portal (the permission matrix's), rendered as an Org admin and
as a member with hostile strings in every field that users, admins, workspaces or drivers
choose, carries them as text, never as markup: no element, no attribute, no javascript:
or data: link. A review found no such injection; this keeps it so."""

from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import models
from django.test import Client
from django.urls import reverse

from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure
from tests import test_permission_matrix as matrix
from tests.matrix_roles import ADMIN, MEMBER, people  # noqa: F401

P = "Q\"'><xss-probe></xss-probe> xss-attr=1 "
JS = "javascript:alert(1)//"


class Scan(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.bad = []

    def handle_starttag(self, tag, attrs):
        if tag == "xss-probe":
            self.bad.append(f"<{tag}>")
        for name, value in attrs:
            if name == "xss-attr" or name.startswith("on"):
                self.bad.append(f"attr {name} on <{tag}>")
            if name in {"href", "src", "action", "formaction", "hx-get", "hx-post"} and (
                value or ""
            ).strip().lower().startswith(("javascript:", "data:")):
                self.bad.append(f"{name}={value!r} on <{tag}>")


# Models whose names are unique: each row gets the payload after its own pk.
UNIQUELY_NAMED = [
    "profiles.Infrastructure",
    "profiles.ComputeProfile",
    "profiles.ServicesProfile",
    "portal.Team",
]


def rename():
    for label in UNIQUELY_NAMED:
        model = apps.get_model(label)
        for obj in model.objects.exclude(name__startswith="#"):
            changes = {"name": f"#{obj.pk} {obj.name}"[:100]}
            if label == "profiles.ServicesProfile" and obj.slug == "plain":
                changes["slug"] = f"plain-{obj.pk}"
            if label == "profiles.ComputeProfile":
                changes["slug"] = f"{obj.slug}-{obj.pk}"
            model.objects.filter(pk=obj.pk).update(**changes)


def poison():
    """Put the payload in every untrusted text field of every row there is."""
    fields = {
        "pools.Workspace": ["name", "failure_reason", "failure_detail", "profile_name"],
        "pools.WorkspaceEvent": ["message"],
        "pools.Pool": ["last_failure"],
        "pools.PoolSchedule": ["name"],
        "services.ServiceDeployment": ["failure_reason", "failure_detail", "profile_name"],
        "services.ComponentDeployment": ["reason", "log_tail"],
        "profiles.Infrastructure": ["description", "health_reason"],
        "profiles.ComputeProfile": ["description"],
        "profiles.ServicesProfile": ["description"],
        "profiles.PartitioningStrategy": ["apply_error"],
        "portal.Team": ["description"],
        "portal.AuditEntry": ["actor_name", "message", "object_repr"],
        "portal.Notification": ["subject", "body"],
        "usage.Price": ["note"],
    }
    for label, names in fields.items():
        model = apps.get_model(label)
        names = [n for n in names if any(f.name == n for f in model._meta.fields)]
        for obj in model.objects.all():
            for n in names:
                field = model._meta.get_field(n)
                value = P + JS
                if isinstance(field, models.CharField):
                    value = value[: field.max_length]
                setattr(obj, n, value)
            model.objects.filter(pk=obj.pk).update(**{n: getattr(obj, n) for n in names})
    # unique names: add the payload with the pk
    for label in UNIQUELY_NAMED:
        model = apps.get_model(label)
        for obj in model.objects.all():
            model.objects.filter(pk=obj.pk).update(name=f"{obj.pk}{P}"[:100])
    get_user_model().objects.update(first_name=P[:150], last_name=P[:150])


GETS = [
    u
    for u in matrix.URLS
    if u.name in matrix.EXPECTED and matrix.EXPECTED[u.name].method == "get" and u.name != "readyz"
]


@pytest.mark.django_db
def test_no_page_carries_a_payload_as_markup(people, monkeypatch):  # noqa: F811
    original = matrix._infrastructure

    def one_local():
        found = Infrastructure.objects.filter(kind=InfrastructureKind.LOCAL).first()
        return found or original()

    monkeypatch.setattr(matrix, "_infrastructure", one_local)
    made, by_factory = {}, {}
    for url in GETS:
        if url.arguments:
            factory = matrix._factory_for(url.name)
            if factory not in by_factory:
                by_factory[factory] = factory(people)
                rename()
            made[url.name] = by_factory[factory]
    poison()
    problems, shown = [], set()
    for role in (ADMIN, MEMBER):
        client = Client()
        client.force_login(people[role])
        for url in GETS:
            kwargs = {n: made[url.name][n] for n in url.arguments} if url.arguments else {}
            path = reverse(url.name, kwargs=kwargs)
            try:
                response = client.get(path)
            except Exception as error:  # a page that raises is a finding too
                problems.append(f"{role} {path}: {type(error).__name__}: {error}")
                continue
            if response.status_code >= 500:
                problems.append(f"{role} {path}: {response.status_code}")
            ctype = response.get("Content-Type", "")
            if "html" not in ctype:
                continue
            if "&lt;xss-probe&gt;" in response.content.decode():
                shown.add(f"{role} {path}")
            scan = Scan()
            scan.feed(response.content.decode())
            for bad in scan.bad:
                problems.append(f"{role} {path}: {bad}")
    print(len(shown), "pages showed the payload, escaped:", sorted(shown))
    assert len(shown) > 40  # the payloads were on the pages: the sweep is not vacuous
    assert not problems, "\n".join(problems)
