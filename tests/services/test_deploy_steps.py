"""Deploying is a series of short steps: the component lifecycle, the claim that keeps two
deliveries of the task from starting a component twice, and no worker held while a
component starts."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_q.models import Schedule

from pools import supervisor
from pools.lifecycle import IllegalTransition, State, transition
from profiles.models import ServicesProfile
from services import actions as services
from services import components as catalog
from services import tasks as service_tasks
from services.backends.base import DEPLOYING, ComponentResult
from services.backends.local import LocalServices
from services.models import COMPONENT_LIFECYCLE, ComponentDeployment, ComponentStatus

# A step looks at each component once (an HTTP check has a 2-second timeout); it never
# waits for one to start.
MAX_STEP_SECONDS = 5


def jobs_profile(name: str = "Queue") -> ServicesProfile:
    profile = ServicesProfile.objects.create(name=name, slug=name.lower(), published=True)
    profile.components.create(capability=catalog.Capability.JOBS, component=catalog.JobQueue.code)
    return profile


# -- the component lifecycle -------------------------------------------------------------


def test_every_component_status_has_declared_transitions():
    assert set(COMPONENT_LIFECYCLE.states) == set(ComponentStatus.values)
    assert COMPONENT_LIFECYCLE.allows(ComponentStatus.PENDING, ComponentStatus.DEPLOYING)
    assert not COMPONENT_LIFECYCLE.allows(ComponentStatus.UNAVAILABLE, ComponentStatus.READY)
    assert not COMPONENT_LIFECYCLE.allows(ComponentStatus.REMOVED, ComponentStatus.READY)
    for status in ComponentStatus.values:  # a redeploy or a stop starts every one again
        assert status == ComponentStatus.PENDING or COMPONENT_LIFECYCLE.allows(
            status, ComponentStatus.PENDING
        )


@pytest.mark.django_db
def test_a_component_moves_only_along_its_transitions_and_once(ready_workspace, scientist):
    deployment = services.deploy(scientist, ready_workspace, jobs_profile())
    row = deployment.components.get()
    stale = deployment.components.get()
    assert row.move(ComponentStatus.REMOVED) is True
    with pytest.raises(IllegalTransition):
        row.move(ComponentStatus.READY)  # removed → ready: no such edge
    row.refresh_from_db()
    assert row.status == ComponentStatus.REMOVED
    assert deployment.events.filter(message="Jobs queue removed").count() == 1
    # A worker holding an older copy does not move it again: the UPDATE is conditional.
    assert stale.move(ComponentStatus.DEPLOYING) is False
    row.refresh_from_db()
    assert row.status == ComponentStatus.REMOVED
    # Staying in a status only writes fields, and records no event.
    assert row.move(ComponentStatus.REMOVED, reason="still gone") is True
    assert deployment.events.filter(message__startswith="Jobs queue").count() == 1


@pytest.mark.django_db
def test_a_components_reason_and_log_are_stored_without_control_characters(
    ready_workspace, scientist
):
    """Both may quote what the component wrote, and PostgreSQL refuses a NUL in text."""
    deployment = services.deploy(scientist, ready_workspace, jobs_profile())
    row = deployment.components.get()
    assert row.move(ComponentStatus.FAILED, reason="bad\x00 start", log_tail="a\x00b\n\tc\x7f")
    row.refresh_from_db()
    assert (row.reason, row.log_tail) == ("bad start", "ab\n\tc")


# -- issue 11, finding 8: two deliveries of one deploy -----------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_a_deploy_start_the_component_once(
    ready_workspace, scientist, monkeypatch
):
    """Both deliveries find the deployment provisioning; only the one that claimed it
    starts the jobs queue, the other returns at once (before: two processes, one leaked)."""
    if connection.vendor != "postgresql":
        pytest.skip("the claim is a row lock (SKIP LOCKED): PostgreSQL")
    deployment = services.deploy(scientist, ready_workspace, jobs_profile())
    assert transition(deployment, State.PROVISIONING, message="deploying")
    started, inside, go = [], threading.Event(), threading.Event()
    real_start = supervisor.start

    def slow_start(argv, *args, **kwargs):
        if "--egress" in argv:  # the workspace's HTTPS proxy, started with its first process
            return real_start(argv, *args, **kwargs)
        started.append(argv)
        inside.set()
        go.wait(15)  # the first delivery is mid-start when the second one arrives
        return real_start(argv, *args, **kwargs)

    monkeypatch.setattr(supervisor, "start", slow_start)
    results = {}

    def first_delivery():
        try:
            results["first"] = service_tasks.deploy_services(deployment.pk)
        finally:
            connections.close_all()

    worker = threading.Thread(target=first_delivery)
    worker.start()
    try:
        assert inside.wait(30), "the first delivery never started the component"
        results["second"] = service_tasks.deploy_services(deployment.pk)
    finally:
        go.set()
        worker.join(60)
    assert len(started) == 1, "the second delivery started the component again"
    assert results["second"] == "another worker is deploying it"
    assert results["first"] in ("ready", "Jobs queue still starting")


# -- no sleeping in workers --------------------------------------------------------------


@pytest.mark.django_db
def test_a_starting_component_schedules_the_next_step_instead_of_waiting(
    ready_workspace, scientist, monkeypatch
):
    deployment = services.deploy(scientist, ready_workspace, jobs_profile())
    checks = []

    def still_starting(self, ctx):
        checks.append(ctx.name)
        return ComponentResult(DEPLOYING, reason="starting")

    monkeypatch.setattr(LocalServices, "check", still_starting)
    before = timezone.now()
    started = time.monotonic()
    assert service_tasks.deploy_services(deployment.pk) == "Jobs queue still starting"
    assert time.monotonic() - started < MAX_STEP_SECONDS
    assert len(checks) == 1  # looked once
    retry = Schedule.objects.get(name=f"retry deploy_services {deployment.pk}")
    assert retry.func == service_tasks.DEPLOY
    assert retry.next_run >= before + timedelta(seconds=service_tasks.POLL)
    row = deployment.components.get()
    assert row.status == ComponentStatus.DEPLOYING
    # Past the component's start timeout, the steps slow down to the backoff interval.
    ComponentDeployment.objects.filter(pk=row.pk).update(
        status_changed=timezone.now() - timedelta(seconds=catalog.JobQueue.start_timeout)
    )
    before = timezone.now()
    assert service_tasks.deploy_services(deployment.pk) == "Jobs queue still starting"
    retry.refresh_from_db()
    assert retry.next_run >= before + timedelta(seconds=service_tasks.steps.BACKOFF_BASE)


@pytest.mark.django_db
@pytest.mark.local_services
def test_a_stack_of_four_components_keeps_no_worker_busy_while_it_starts(
    ready_workspace, scientist
):
    """JupyterLab, MLflow, the jobs queue and the training runner, started for real and
    driven to ready one step at a time; each step (each task invocation) is short."""
    profile = ServicesProfile.objects.create(name="Four", slug="four", published=True)
    stack = [
        (catalog.Capability.NOTEBOOK, catalog.JupyterLab),
        (catalog.Capability.EXPERIMENT_TRACKING, catalog.MLflow),
        (catalog.Capability.JOBS, catalog.JobQueue),
        (catalog.Capability.TRAINING, catalog.TrainingRunner),
    ]
    for position, (capability, component) in enumerate(stack):
        profile.components.create(
            position=position, capability=capability, component=component.code
        )
    deployment = services.deploy(scientist, ready_workspace, profile)
    durations, results = [], []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        started = time.monotonic()
        result = service_tasks.deploy_services(deployment.pk)
        durations.append(time.monotonic() - started)
        results.append(result)
        if not result.endswith("still starting"):
            break
        # It scheduled its next step instead of waiting for the component.
        assert Schedule.objects.filter(name=f"retry deploy_services {deployment.pk}").exists()
        time.sleep(0.5)  # the test waits, as the scheduler would; no worker does
    print(
        f"\n{len(durations)} steps to ready; longest {max(durations):.2f} s, "
        f"total in workers {sum(durations):.2f} s"
    )
    assert result == "ready", results
    statuses = set(deployment.components.values_list("status", flat=True))
    assert statuses == {ComponentStatus.READY}
    assert len(durations) > 1  # it took several steps: the components were started, not awaited
    assert max(durations) < MAX_STEP_SECONDS, durations


@pytest.mark.django_db
def test_an_unexpected_errors_text_never_reaches_the_page(ready_workspace, scientist, monkeypatch):
    """Its text may quote anything (a credential in a header, say): the page shows its
    class; the traceback stays for administrators."""
    deployment = services.deploy(scientist, ready_workspace, jobs_profile())

    def leaky_deploy(self, ctx):
        raise ValueError("Invalid header value b'Bearer TOPSECRET'")

    monkeypatch.setattr(LocalServices, "deploy", leaky_deploy)
    service_tasks.deploy_services(deployment.pk)
    row = deployment.components.get()
    assert "TOPSECRET" not in row.reason
    assert row.reason == "Unexpected ValueError"


@pytest.mark.django_db
def test_a_parameter_the_catalog_refuses_is_shown_in_its_words(ready_workspace, scientist):
    deployment = services.deploy(scientist, ready_workspace, jobs_profile())
    deployment.components.update(parameters={"colour": "blue"})  # valid when it was saved

    service_tasks.deploy_services(deployment.pk)

    assert "has no parameter “colour”" in deployment.components.get().reason
