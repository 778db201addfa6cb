"""The header's navigation: the admin pages grouped by job, each link shown to whoever may
open it, and the section of the page being shown marked current.

Fourteen flat links wrapped onto two lines at 1366 px; four menus (Catalog, Capacity, People,
Records) beside Self-service and Overview fit on one. A menu is a `<details>` element, so it
opens with the keyboard and without JavaScript.
"""

from dataclasses import dataclass

from django.urls import reverse

from portal.roles import USE, VIEW, Area, has_perm


@dataclass(frozen=True)
class Link:
    """A page in the menus; current on every page under its path (list, details, edits)."""

    label: str
    url_name: str
    area: str
    action: str = VIEW


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    current: bool


@dataclass(frozen=True)
class NavSection:
    label: str
    links: list[NavLink]

    @property
    def current(self) -> bool:
        return any(link.current for link in self.links)


SECTIONS: list[tuple[str, list[Link]]] = [
    (
        "Catalog",
        [
            Link("Infrastructure", "profiles:infrastructure_list", Area.INFRASTRUCTURE),
            Link("Compute profiles", "profiles:computeprofile_list", Area.PROFILES),
            Link("Services profiles", "profiles:servicesprofile_list", Area.PROFILES),
            Link("Partitioning", "profiles:partitioningstrategy_list", Area.PROFILES),
            Link("Prices", "usage:price_list", Area.PROFILES),
        ],
    ),
    (
        "Capacity",
        [
            Link("Warm pools", "pools:pool_list", Area.POOLS),
            Link("Workspaces", "workspaces:workspace_list", Area.WORKSPACES),
            Link("Usage and cost", "usage:showback", Area.WORKSPACES),
        ],
    ),
    (
        "People",
        [
            Link("Users", "portal:user_list", Area.USERS),
            Link("Groups", "portal:team_list", Area.USERS),
            Link("Invitations", "portal:invitation_list", Area.USERS),
            Link("SSO", "portal:sso_settings", Area.USERS),
        ],
    ),
    (
        "Records",
        [
            Link("Audit log", "portal:auditentry_list", Area.AUDIT),
            Link("Support matrix", "profiles:support_matrix", Area.PROFILES),
        ],
    ),
]

# The links beside the menus: the scientist's own page and the admin's overview.
SELF_SERVICE = Link("Self-service", "workspaces:self_service", Area.SELF_SERVICE, USE)
OVERVIEW = Link("Overview", "overview:index", Area.PROFILES)


def _allowed(user, link: Link) -> bool:
    return has_perm(user, link.area, link.action)


def navigation(user, path: str) -> dict:
    """The top links and the menus `user` may open, with the one showing `path` current.

    Self-service is current on every `/workspaces/` page the menus do not claim (the
    admin's list of all workspaces is Capacity's).
    """
    sections = []
    for label, links in SECTIONS:
        urls = [(link.label, reverse(link.url_name)) for link in links if _allowed(user, link)]
        if urls:
            sections.append(
                NavSection(label, [NavLink(text, url, path.startswith(url)) for text, url in urls])
            )
    in_a_menu = any(section.current for section in sections)
    top = []
    if _allowed(user, SELF_SERVICE):
        url = reverse(SELF_SERVICE.url_name)
        top.append(NavLink(SELF_SERVICE.label, url, path.startswith(url) and not in_a_menu))
    if _allowed(user, OVERVIEW):
        url = reverse(OVERVIEW.url_name)
        top.append(NavLink(OVERVIEW.label, url, path == url))
    return {"nav_top": top, "nav_sections": sections}
