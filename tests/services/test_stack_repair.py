"""A services stack reads Ready only while every component it runs answers: a component
whose restart failed half-way (moved to pending, then the backend raised) is not running,
so the next look keeps the stack degraded, and the repair after it restarts the component."""

from dataclasses import asdict

import pytest

from pools.drivers.base import TransientError, WorkspaceSpec
from pools.lifecycle import State
from services import tasks as service_tasks
from services.backends import base as svc
from services.models import ServiceDeployment

pytestmark = pytest.mark.django_db


class FlakyBackend:
    """A backend whose restart fails until `fixed` (the host was busy, the API timed out),
    and whose check says what is true: a component runs only once a restart succeeded."""

    def __init__(self):
        self.fixed = False
        self.running = False

    def check(self, ctx):
        if self.running:
            return svc.ComponentResult(svc.READY, endpoints=[{"name": "ui", "url": "http://x"}])
        return svc.ComponentResult(svc.DEPLOYING, reason="does not answer on its port")

    def restart(self, ctx):
        if not self.fixed:
            raise TransientError("the restart timed out")
        self.running = True
        return svc.ComponentResult(svc.READY)


@pytest.fixture
def backend(monkeypatch):
    backend = FlakyBackend()
    monkeypatch.setattr(service_tasks, "backend_for", lambda infrastructure: backend)
    return backend


@pytest.fixture
def degraded_stack(local_infrastructure):
    spec = WorkspaceSpec(name="ws-1", owner="mia", profile="starter", profile_version=1, groups=())
    deployment = ServiceDeployment.objects.create(
        infrastructure=local_infrastructure,
        target_name="ws-1",
        spec=asdict(spec),
        profile_name="Notebook",
        state=State.DEGRADED,
    )
    deployment.components.create(
        position=0,
        capability="notebook",
        component="jupyterlab",
        status=svc.FAILED,
        reason="JupyterLab: does not answer",
    )
    return deployment


def test_a_component_whose_restart_failed_keeps_the_stack_degraded(degraded_stack, backend):
    with pytest.raises(TransientError):  # the watch logs it and looks again later
        service_tasks.repair_stack(degraded_stack)
    assert degraded_stack.components.get().status == svc.PENDING

    degraded_stack.refresh_from_db()
    problems = service_tasks.check_stack(degraded_stack)

    degraded_stack.refresh_from_db()
    assert problems == ["JupyterLab: not ready: does not answer on its port"]
    assert degraded_stack.state == State.DEGRADED
    assert degraded_stack.components.get().status == svc.FAILED

    backend.fixed = True
    assert service_tasks.repair_stack(degraded_stack) == ["JupyterLab"]
    assert service_tasks.check_stack(degraded_stack) == []
    degraded_stack.refresh_from_db()
    assert degraded_stack.state == State.READY
