# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import itertools

import pytest
from django.db import connection
from django.utils import timezone

from pools.lifecycle import (
    WORKSPACE_LIFECYCLE,
    IllegalTransition,
    State,
    Step,
    advance,
    claim,
    create,
    create_many,
    log_step,
    transition,
)
from pools.models import PoolInstance, PoolInstanceEvent, Workspace
from tests.pools.warm_fixtures import make_instances
from tests.workspace_fixtures import starter, workspace_factory, workspaces_root  # noqa: F401

ALL_PAIRS = list(itertools.product(State.values, repeat=2))
LEGAL = [(a, b) for a, b in ALL_PAIRS if WORKSPACE_LIFECYCLE.allows(a, b)]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if not WORKSPACE_LIFECYCLE.allows(a, b)]


def test_the_workspace_lifecycle_has_exactly_the_documented_edges():
    assert sorted(LEGAL) == sorted(
        [
            ("requested", "provisioning"),
            ("requested", "deleting"),
            ("requested", "failed"),
            ("provisioning", "ready"),
            ("provisioning", "deleting"),
            ("provisioning", "failed"),
            ("ready", "deleting"),
            ("ready", "stopping"),
            ("ready", "degraded"),
            ("degraded", "ready"),
            ("degraded", "failed"),
            ("degraded", "stopping"),
            ("degraded", "deleting"),
            ("stopping", "stopped"),
            ("stopping", "failed"),
            ("stopping", "deleting"),
            ("stopped", "starting"),
            ("stopped", "deleting"),
            ("starting", "ready"),
            ("starting", "stopped"),
            ("starting", "failed"),
            ("starting", "deleting"),
            ("deleting", "deleted"),
            ("deleting", "failed"),
            ("failed", "deleting"),
        ]
    )


@pytest.mark.parametrize(("from_state", "to_state"), ILLEGAL)
def test_every_illegal_transition_raises(from_state, to_state, member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=from_state)
    with pytest.raises(IllegalTransition):
        transition(workspace, to_state)
    workspace.refresh_from_db()
    assert workspace.state == from_state
    assert not workspace.events.exists()


@pytest.mark.parametrize(("from_state", "to_state"), LEGAL)
def test_every_legal_transition_moves_and_writes_an_event(
    from_state,
    to_state,
    member,
    starter,
    workspace_factory,
):
    workspace = workspace_factory(member, starter, state=from_state)
    assert transition(workspace, to_state, actor=member, message="because")
    workspace.refresh_from_db()
    assert workspace.state == to_state
    event = workspace.events.get()
    assert (event.from_state, event.to_state, event.message, event.actor) == (
        from_state,
        to_state,
        "because",
        member,
    )


def test_only_one_of_two_workers_moves_the_same_workspace(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.PROVISIONING)
    first = Workspace.objects.get(pk=workspace.pk)
    second = Workspace.objects.get(pk=workspace.pk)
    assert transition(first, State.READY)
    assert not transition(second, State.FAILED)  # its view of the state was stale
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert workspace.events.count() == 1


def test_a_system_transition_has_no_actor(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter)
    transition(workspace, State.PROVISIONING)
    assert workspace.events.get().actor_name == "system"


def test_advance_walks_a_path_in_two_statements_with_an_event_per_edge(
    member, starter, workspace_factory, django_assert_num_queries
):
    workspace = workspace_factory(member, starter)
    path = [Step(State.PROVISIONING, "claimed", actor=member), Step(State.READY, "ready")]
    with django_assert_num_queries(2):
        assert advance(workspace, path, failure_reason="")
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    events = [(e.from_state, e.to_state, e.message, e.actor_name) for e in workspace.events.all()]
    assert events == [
        ("requested", "provisioning", "claimed", member.username),
        ("provisioning", "ready", "ready", "system"),
    ]


def test_advance_checks_every_edge_and_writes_nothing_when_one_is_illegal(
    member, starter, workspace_factory
):
    workspace = workspace_factory(member, starter)
    with pytest.raises(IllegalTransition):
        advance(workspace, [Step(State.PROVISIONING), Step(State.STOPPED)])
    workspace.refresh_from_db()
    assert workspace.state == State.REQUESTED
    assert not workspace.events.exists()


def test_advance_loses_to_a_worker_that_moved_first(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter)
    stale = Workspace.objects.get(pk=workspace.pk)
    assert transition(workspace, State.FAILED)
    assert not advance(stale, [Step(State.PROVISIONING), Step(State.READY)])
    assert stale.state == State.REQUESTED
    assert [e.to_state for e in workspace.events.all()] == [State.FAILED]


def test_steps_are_events_within_a_state(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.PROVISIONING)
    log_step(workspace, "directory created")
    assert [e.message for e in workspace.steps()] == ["directory created"]


def test_a_pool_lifecycle_extends_the_workspace_one_without_changing_it():
    pool = WORKSPACE_LIFECYCLE.extend({State.READY: {State.CLAIMED}})
    assert pool.allows(State.READY, State.CLAIMED)
    assert pool.allows(State.READY, State.DELETING)
    assert not WORKSPACE_LIFECYCLE.allows(State.READY, State.CLAIMED)


# --- the claim: one object among many, in one statement --------------------------------


@pytest.fixture
def ready_instances(warm_profile):
    return make_instances(warm_profile, 3)


def test_a_claim_takes_the_first_candidate_and_writes_its_event(ready_instances, member):
    candidates = PoolInstance.objects.filter(state=State.READY).order_by("-pk")
    claimed = claim(
        candidates, State.CLAIMED, from_state=State.READY, actor=member, message="claimed by me"
    )
    assert claimed.pk == ready_instances[-1].pk
    assert (claimed.state, claimed.resource_name) == (State.CLAIMED, f"pool-{claimed.pk}")
    claimed.refresh_from_db()
    assert claimed.state == State.CLAIMED
    [event] = claimed.events.all()
    assert (event.from_state, event.to_state, event.message, event.actor) == (
        State.READY,
        State.CLAIMED,
        "claimed by me",
        member,
    )


def test_a_claim_returns_the_row_as_written_without_reading_it_again(
    ready_instances, django_assert_num_queries
):
    now = timezone.now()
    instance = ready_instances[0]
    PoolInstance.objects.filter(pk=instance.pk).update(
        connection={"url": "http://x"}, secret="s3cret"
    )
    # PostgreSQL: one statement for the row and its event; SQLite: UPDATE … RETURNING, event.
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        claimed = claim(
            PoolInstance.objects.filter(pk=instance.pk),
            State.CLAIMED,
            from_state=State.READY,
            claimed_at=now,
        )
    assert claimed.connection == {"url": "http://x"}  # JSON and encrypted fields decoded
    assert claimed.secret == "s3cret"
    assert claimed.claimed_at == now


def test_a_claim_moves_only_objects_in_the_from_state(ready_instances):
    PoolInstance.objects.update(state=State.PROVISIONING)
    assert claim(PoolInstance.objects.all(), State.CLAIMED, from_state=State.READY) is None
    assert not PoolInstance.objects.filter(state=State.CLAIMED).exists()
    assert not PoolInstanceEvent.objects.exists()


def test_a_claim_along_no_edge_raises(ready_instances):
    with pytest.raises(IllegalTransition):
        claim(PoolInstance.objects.all(), State.STOPPING, from_state=State.READY)
    assert not PoolInstance.objects.exclude(state=State.READY).exists()


def test_the_fallback_without_update_returning_claims_each_instance_once(
    ready_instances, monkeypatch
):
    monkeypatch.setattr("pools.lifecycle._updates_returning", lambda connection: False)
    candidates = PoolInstance.objects.order_by("pk")
    claimed = [claim(candidates, State.CLAIMED, from_state=State.READY) for _ in range(4)]
    assert [c.pk if c else None for c in claimed] == [i.pk for i in ready_instances] + [None]
    assert PoolInstanceEvent.objects.filter(to_state=State.CLAIMED).count() == 3


def test_create_many_writes_one_event_per_object_in_two_statements(
    warm_profile, django_assert_num_queries
):
    new = [
        PoolInstance(profile=warm_profile, infrastructure=warm_profile.infrastructure)
        for _ in range(5)
    ]
    with django_assert_num_queries(2):
        made = create_many(new, message="requested by the loop")
    assert sorted(e.instance_id for e in PoolInstanceEvent.objects.all()) == [m.pk for m in made]
    assert {e.message for e in PoolInstanceEvent.objects.all()} == {"requested by the loop"}


def test_create_writes_the_object_and_its_first_event(member, starter):
    workspace = create(
        Workspace,
        actor=member,
        message="requested",
        owner=member,
        profile=starter,
        infrastructure=starter.infrastructure,
    )
    [event] = workspace.events.all()
    assert (event.from_state, event.to_state, event.actor) == (
        State.REQUESTED,
        State.REQUESTED,
        member,
    )
