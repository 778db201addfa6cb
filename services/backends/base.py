"""The interface between the deployment tasks and a driver's services backend."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from pools.drivers.base import WorkspaceSpec
from services.components import Component, object_name

# Statuses of one component of a deployment.
PENDING, DEPLOYING, READY, FAILED, UNAVAILABLE, REMOVED = (
    "pending",
    "deploying",
    "ready",
    "failed",
    "unavailable",
    "removed",
)
LOG_TAIL_LINES = 40
LOG_TAIL_CHARS = 4000
# Control characters but tab and newline, and lone surrogates: PostgreSQL refuses NUL in
# text, UTF-8 has no surrogates, and the others only garble a page.
UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class ComponentContext:
    """One component to realise for one workspace, with its parameters resolved."""

    spec: WorkspaceSpec
    component: Component
    version: str
    parameters: dict
    secret: str = ""  # a credential made by an earlier attempt, reused so retries agree
    stack: str = ""  # the services profile's slug (a label on Kubernetes)

    @property
    def code(self) -> str:
        return self.component.code

    @property
    def name(self) -> str:
        """The stable name of the component's resources: `<workspace>-<component>`."""
        return object_name(self.spec.name, self.component.code)


@dataclass
class ComponentResult:
    status: str
    endpoints: list[dict] = field(default_factory=list)  # [{"name", "url"}]
    secret: str = ""
    reason: str = ""
    log_tail: str = ""
    detail: dict = field(default_factory=dict)


def printable(text: str) -> str:
    """`text` as it can be stored and shown: without `UNPRINTABLE` characters."""
    return UNPRINTABLE.sub("", text)


def tail(text: str) -> str:
    """The end of a log to store with a component. A log is written by the component (the
    workspace's code), so it may hold any bytes: only printable text is kept."""
    lines = text.splitlines()[-LOG_TAIL_LINES:]
    return printable("\n".join(lines))[-LOG_TAIL_CHARS:]


class ServicesBackend(ABC):
    """How one kind of infrastructure runs components. Every method is idempotent."""

    def __init__(self, infrastructure):
        self.infrastructure = infrastructure

    def availability(self, component: Component) -> tuple[bool, str]:
        return True, ""

    @abstractmethod
    def deploy(self, ctx: ComponentContext) -> ComponentResult:
        """Create what is absent and return where the component stands."""

    @abstractmethod
    def check(self, ctx: ComponentContext) -> ComponentResult:
        """Where the component stands, without changing anything."""

    def restart(self, ctx: ComponentContext) -> ComponentResult:
        """Bring back a component that stopped serving, keeping its data and credential
        (`pools.watch`); by default deploy it again, which creates only what is absent."""
        return self.deploy(ctx)

    @abstractmethod
    def remove(self, ctx: ComponentContext) -> None:
        """Delete whatever of the component is present."""

    @abstractmethod
    def remove_all(self, spec: WorkspaceSpec) -> None:
        """Delete every component of the workspace, whatever deployment made it."""
