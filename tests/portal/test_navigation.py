"""The header: admin pages grouped by job, only what the user may open, the current
section marked (issue 18)."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from portal.navigation import navigation


def labels(nav: dict) -> dict[str, list[str]]:
    return {section.label: [x.label for x in section.links] for section in nav["nav_sections"]}


def test_an_org_admin_sees_four_menus_grouped_by_job(org_admin):
    nav = navigation(org_admin, "/")
    assert labels(nav) == {
        "Catalog": [
            "Infrastructure",
            "Compute profiles",
            "Services profiles",
            "Partitioning",
            "Prices",
        ],
        "Capacity": ["Warm pools", "Workspaces", "Usage and cost"],
        "People": ["Users", "Groups", "Invitations", "SSO"],
        "Records": ["Audit log", "Support matrix"],
    }
    assert [link.label for link in nav["nav_top"]] == ["Self-service", "Overview"]


def test_a_data_scientist_sees_only_self_service(member):
    nav = navigation(member, "/workspaces/")
    assert nav["nav_sections"] == []
    assert [(link.label, link.current) for link in nav["nav_top"]] == [("Self-service", True)]


def test_an_operator_has_no_people_menu(operator):
    assert "People" not in labels(navigation(operator, "/"))


@pytest.mark.parametrize(
    ("url_name", "args", "section", "link"),
    [
        ("profiles:infrastructure_add", (), "Catalog", "Infrastructure"),
        ("pools:pool_list", (), "Capacity", "Warm pools"),
        ("workspaces:workspace_list", (), "Capacity", "Workspaces"),
        ("usage:showback", (), "Capacity", "Usage and cost"),
        ("usage:price_add", (), "Catalog", "Prices"),
        ("portal:user_list", (), "People", "Users"),
        ("profiles:support_matrix", (), "Records", "Support matrix"),
    ],
)
def test_the_section_and_link_of_the_page_shown_are_current(
    org_admin, url_name, args, section, link
):
    nav = navigation(org_admin, reverse(url_name, args=args))
    current = [(s.label, x.label) for s in nav["nav_sections"] for x in s.links if x.current]
    assert current == [(section, link)]
    assert [s.label for s in nav["nav_sections"] if s.current] == [section]
    assert not any(link.current for link in nav["nav_top"])  # not Self-service too


def test_the_header_marks_the_current_page_for_assistive_technology(admin_client):
    url = reverse("profiles:infrastructure_list")
    response = admin_client.get(url)
    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    hidden = '<span class="visually-hidden"> (current section)</span>'
    assert f'<summary class="current">Catalog{hidden}</summary>' in html
    assert f'<a href="{url}" aria-current="page">Infrastructure</a>' in html
    assert html.count('aria-current="page"') == 1


def test_the_header_links_a_favicon(admin_client):
    html = admin_client.get(reverse("overview:index")).content.decode()
    assert 'rel="icon" href="/static/portal/favicon.svg"' in html


def test_a_viewer_sees_the_admin_menus_but_not_self_service(viewer):
    nav = navigation(viewer, "/")
    assert [link.label for link in nav["nav_top"]] == ["Overview"]
    assert set(labels(nav)) == {"Catalog", "Capacity", "People", "Records"}
