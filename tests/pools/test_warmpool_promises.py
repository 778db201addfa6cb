"""A request that finds no ready warm instance waits for one on its way (`pools.promises`),
with the real local driver: the hand-over, the fallback, deletion while waiting, the loop."""

# ruff: noqa: F811
from datetime import timedelta

import pytest
from django.utils import timezone

from pools import lifecycle, promises, slo, stats, tasks, warmpool
from pools.lifecycle import State
from pools.models import PoolInstance
from tests.pools.warm_fixtures import make_instances
from tests.workspace_fixtures import fake_gpus, workspaces_root  # noqa: F401
from workspaces import actions, dashboard, estimates


def on_its_way(profile, seconds_ago: float = 0) -> PoolInstance:
    [instance] = make_instances(profile, 1, state=State.PROVISIONING)
    created = timezone.now() - timedelta(seconds=seconds_ago)
    PoolInstance.objects.filter(pk=instance.pk).update(created=created, state_changed=created)
    instance.refresh_from_db()
    return instance


def test_a_request_waits_for_an_instance_on_its_way_and_gets_it_when_ready(
    warm_profile, member, workspaces_root, django_capture_on_commit_callbacks
):
    instance = on_its_way(warm_profile)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        workspace = actions.request_workspace(member, warm_profile)
    assert workspace.state == State.PROVISIONING
    assert workspace.claim_message.startswith(
        f"no warm instance was ready; {instance.resource_name} is on its way"
    )
    instance.refresh_from_db()
    assert (instance.state, instance.workspace_id) == (State.PROVISIONING, workspace.pk)
    # Its own task runs (to wait), and the loop (to replace the promised instance).
    assert sorted(c.__name__ for c in callbacks) == ["<lambda>", "enqueue_loop"]
    assert tasks.provision_workspace(workspace.pk) == promises.WAITING

    # The worker provisioning the instance finishes it: the workspace adopts it.
    assert tasks.provision_pool_instance(instance.pk) == "ready"
    instance.refresh_from_db()
    workspace.refresh_from_db()
    assert (instance.state, instance.workspace_id) == (State.CLAIMED, workspace.pk)
    assert workspace.state == State.READY
    assert workspace.connection == instance.connection
    assert workspace.resources_spec().name == instance.resource_name
    assert (workspaces_root / instance.resource_name).exists()
    assert not (workspaces_root / f"ws-{workspace.pk}").exists()  # never provisioned itself
    transitions = [(e.from_state, e.to_state, e.message) for e in workspace.events.all()]
    assert transitions[1:] == [
        (State.REQUESTED, State.PROVISIONING, f"waiting for {instance.resource_name}"),
        (State.PROVISIONING, State.READY, promises.READY_NOW),
    ]
    # Its task, run again (a retry, the sweep), has nothing left to do.
    assert tasks.provision_workspace(workspace.pk) == "nothing to do (ready)"


def test_an_instance_no_worker_has_yet_is_waited_for_too(warm_profile, member, workspaces_root):
    # Its provisioning is enqueued ahead of any the request would start.
    [instance] = make_instances(warm_profile, 1, state=State.REQUESTED)
    workspace = actions.request_workspace(member, warm_profile)
    assert workspace.state == State.PROVISIONING
    assert tasks.provision_workspace(workspace.pk) == promises.WAITING
    assert tasks.provision_pool_instance(instance.pk) == "ready"
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert workspace.resources_spec().name == instance.resource_name


def test_the_workspace_takes_a_ready_instance_its_worker_did_not_hand_over(
    warm_profile, member, workspaces_root
):
    instance = on_its_way(warm_profile)
    workspace = actions.request_workspace(member, warm_profile)
    # The instance's worker died right after it became ready: the workspace's task (its
    # retry, or the sweep) finds it ready and takes it.
    PoolInstance.objects.filter(pk=instance.pk).update(state=State.READY, ready_at=timezone.now())
    assert tasks.provision_workspace(workspace.pk) == promises.READY_NOW
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert PoolInstance.objects.get(pk=instance.pk).state == State.CLAIMED


# Nothing measured on this local infrastructure: a workspace waits 2 minutes
# (`promises.Patience`); a hand-over wins over giving a late instance back too.
@pytest.mark.parametrize("provisioned_for", [0, 180], ids=["on time", "late"])
def test_a_hand_over_while_the_workspace_task_runs_provisions_nothing_more(
    warm_profile, member, workspaces_root, monkeypatch, provisioned_for
):
    instance = on_its_way(warm_profile)
    workspace = actions.request_workspace(member, warm_profile)
    created = timezone.now() - timedelta(seconds=provisioned_for)
    PoolInstance.objects.filter(pk=instance.pk).update(created=created)
    # The workspace's own task (its retry, or the sweep) reads the workspace; right then the
    # instance's worker finishes it and hands it over.
    read = tasks._load

    def read_then_the_instance_is_handed_over(workspace_id):
        loaded = read(workspace_id)
        assert tasks.provision_pool_instance(instance.pk) == "ready"
        return loaded

    monkeypatch.setattr(tasks, "_load", read_then_the_instance_is_handed_over)
    assert tasks.provision_workspace(workspace.pk) == promises.MOVED
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert workspace.resources_spec().name == instance.resource_name
    # Nothing else was made for it: a ws-N now (a directory; GPUs on a GPU profile) would be
    # held until the workspace is deleted, which deletes the instance's resources only.
    assert not (workspaces_root / f"ws-{workspace.pk}").exists()


def measured_300_s(profile) -> None:
    """One provisioning of 300 s measured on the profile's infrastructure."""
    now = timezone.now()
    make_instances(
        profile, 1, state=State.CLAIMED, created=now - timedelta(seconds=400),
        ready_at=now - timedelta(seconds=100),
    )  # fmt: skip


def test_the_oldest_instance_is_promised_when_ready_within_t_else_the_newest(warm_profile, member):
    measured_300_s(warm_profile)  # provisioning p50 300 s; T is 60 s
    old = on_its_way(warm_profile, seconds_ago=250)  # ready in about 50 s
    older = on_its_way(warm_profile, seconds_ago=280)  # ready in about 20 s
    new = on_its_way(warm_profile, seconds_ago=10)
    newest = on_its_way(warm_profile, seconds_ago=5)
    first = actions.request_workspace(member, warm_profile)
    second = actions.request_workspace(member, warm_profile)
    third = actions.request_workspace(member, warm_profile)
    on_the_way = PoolInstance.objects.filter(state=State.PROVISIONING)
    promised = {i.pk: i.workspace_id for i in on_the_way}
    # Soonest first while within T; then none is, so the newest, leaving `new` for the
    # next request (the sooner of what is left).
    assert promised == {older.pk: first.pk, old.pk: second.pk, newest.pk: third.pk, new.pk: None}


def test_a_late_instance_is_neither_promised_nor_counted_on(warm_profile, member):
    """Provisioning p90 300 s here: after 600 s an instance is late (`promises.Patience`),
    and a workspace promised it would give it back at its first look."""
    measured_300_s(warm_profile)
    stuck = on_its_way(warm_profile, seconds_ago=700)
    assert (
        estimates.estimate(warm_profile)
        == "about 5 minutes (provisioning p50 on this infrastructure)"
    )
    fresh = on_its_way(warm_profile, seconds_ago=10)
    assert estimates.estimate(warm_profile) == "about 5 minutes (a warm instance on its way)"
    first = actions.request_workspace(member, warm_profile)
    assert PoolInstance.objects.get(workspace=first) == fresh
    second = actions.request_workspace(member, warm_profile)
    assert second.claim_message == "no warm instance was ready, so it is provisioned on demand"
    stuck.refresh_from_db()
    assert stuck.workspace_id is None


def test_before_anything_is_measured_the_promise_assumes_what_the_estimate_said(
    warm_profile, member
):
    # Nothing measured on this local infrastructure: both assume its kind's time (0 s), so
    # the oldest should be ready within T, and the request waits for that one.
    older = on_its_way(warm_profile, seconds_ago=10)
    on_its_way(warm_profile, seconds_ago=5)
    assert estimates.estimate(warm_profile) == "under a minute (a warm instance on its way)"
    workspace = actions.request_workspace(member, warm_profile)
    assert PoolInstance.objects.get(workspace=workspace) == older
    assert workspace.claim_message.endswith("(no provisioning time measured here yet)")


def test_when_the_instance_fails_the_workspace_is_provisioned_on_demand(
    warm_profile, member, workspaces_root, fake_gpus
):
    instance = on_its_way(warm_profile)
    workspace = actions.request_workspace(member, warm_profile)
    PoolInstance.objects.filter(pk=instance.pk).update(
        state=State.FAILED, failure_reason="no capacity"
    )
    assert tasks.provision_workspace(workspace.pk) == "ready"
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert workspace.resources_spec().name == f"ws-{workspace.pk}"  # its own resources
    assert (
        "the warm instance it waited for will not come (no capacity): provisioning on demand"
        in [e.message for e in workspace.events.all()]
    )
    assert PoolInstance.objects.get(pk=instance.pk).workspace_id is None
    # Its time to ready was waiting, then provisioning: no provisioning time to learn from.
    # One provisioned on demand from the start is one.
    infrastructure = warm_profile.infrastructure_id
    assert slo.provisioning([infrastructure], timezone.now()) == {}
    other = actions.request_workspace(member, warm_profile)
    assert tasks.provision_workspace(other.pk) == "ready"
    assert len(slo.provisioning([infrastructure], timezone.now())[infrastructure].samples) == 1


def test_an_instance_that_hits_an_error_is_not_waited_for(warm_profile, member, workspaces_root):
    instance = on_its_way(warm_profile)
    workspace = actions.request_workspace(member, warm_profile)
    PoolInstance.objects.filter(pk=instance.pk).update(attempts=1)
    assert tasks.provision_workspace(workspace.pk) == "ready"
    assert "its provisioning hit an error and is being retried" in " ".join(
        e.message for e in workspace.events.all()
    )
    instance.refresh_from_db()
    assert instance.workspace_id is None and instance.state == State.PROVISIONING


def test_deleting_a_waiting_workspace_gives_its_instance_back_to_the_pool(
    warm_profile, member, workspaces_root
):
    instance = on_its_way(warm_profile)
    workspace = actions.request_workspace(member, warm_profile)
    actions.delete_workspace(member, workspace)
    instance.refresh_from_db()
    assert instance.workspace_id is None and instance.claimed_at is None
    assert tasks.deprovision_workspace(workspace.pk) == "deleted"
    # The instance finishes as the pool's, untouched by the deletion.
    assert tasks.provision_pool_instance(instance.pk) == "ready"
    instance.refresh_from_db()
    assert instance.state == State.READY and instance.workspace_id is None
    assert (workspaces_root / instance.resource_name).exists()


def test_the_loop_replaces_a_promised_instance_and_never_deletes_it(warm_profile, member):
    instance = on_its_way(warm_profile)
    actions.request_workspace(member, warm_profile)
    decision = warmpool.reconcile_profile(warm_profile.pk)
    assert (decision.provisioning, decision.count) == (0, warm_profile.desired_capacity)
    # Even with nothing wanted, the promised instance stays its workspace's.
    warm_profile.desired_capacity = 0
    warm_profile.save()
    warmpool.reconcile_profile(warm_profile.pk)
    instance.refresh_from_db()
    assert instance.state == State.PROVISIONING and instance.workspace_id
    assert (
        not PoolInstance.objects.filter(workspace__isnull=True)
        .exclude(state=State.DELETING)
        .exists()
    )


def test_a_workspace_that_waited_for_its_instance_is_no_warm_hit(
    warm_profile, member, workspaces_root
):
    make_instances(warm_profile, 1)  # ready: a warm hit
    actions.request_workspace(member, warm_profile)
    instance = on_its_way(warm_profile)
    waited = actions.request_workspace(member, warm_profile)
    assert tasks.provision_pool_instance(instance.pk) == "ready"
    waited.refresh_from_db()
    assert waited.state == State.READY
    summary = stats.summarize([warm_profile.pk], timezone.now())
    assert (summary.requests, summary.warm_hits) == (2, 1)
    assert summary.others_p50 is not None  # counted with the others' time to ready
    [row] = [r for r in dashboard.build().pools if r.name == warm_profile.name]
    assert (row.requests, row.hits) == (2, 1)


def test_the_estimate_counts_on_an_instance_on_its_way(warm_profile, member, client):
    # Nothing measured on this local infrastructure yet: its default, "ready in seconds".
    on_its_way(warm_profile, seconds_ago=100)
    assert estimates.estimate(warm_profile) == "under a minute (a warm instance on its way)"
    # Provisioning measured here: 300 s. The oldest is 100 s old, not within 60 s of
    # ready, so a request would wait for the newest, created 10 s ago: about 5 minutes.
    now = timezone.now()
    measured_300_s(warm_profile)
    assert estimates.estimate(warm_profile) == "about 3 minutes (a warm instance on its way)"
    on_its_way(warm_profile, seconds_ago=10)
    assert estimates.estimate(warm_profile) == "about 5 minutes (a warm instance on its way)"
    # Once the oldest is within 60 s of ready, it is the one: under a minute.
    PoolInstance.objects.filter(state=State.PROVISIONING).update(
        created=now - timedelta(seconds=250)
    )
    assert estimates.estimate(warm_profile) == "under a minute (a warm instance on its way)"
    # The self-service page says the same, from annotations of its one profile query.
    client.force_login(member)
    page = client.get("/workspaces/").content.decode()
    assert "under a minute (a warm instance on its way)" in page


def test_an_instance_idles_for_the_slo_budget_only_until_it_is_promised(warm_profile, member):
    instance = on_its_way(warm_profile, seconds_ago=100)
    actions.request_workspace(member, warm_profile)
    instance.refresh_from_db()
    later = instance.claimed_at + timedelta(hours=1)
    idle = slo.idle_gpu_hours([warm_profile.pk], instance.created, later, {warm_profile.pk: 1.0})
    assert idle[warm_profile.pk] == pytest.approx(100 / 3600, abs=0.01)


def test_the_workspace_page_says_which_instance_it_waits_for_and_how_far_it_got(
    warm_profile, member, client
):
    instance = on_its_way(warm_profile)
    lifecycle.log_step(instance, "directory created")
    workspace = actions.request_workspace(member, warm_profile)
    client.force_login(member)
    page = client.get(f"/workspaces/{workspace.pk}/").content.decode()
    assert f'data-waiting-for="{instance.resource_name}"' in page
    assert "Latest: directory created" in page
