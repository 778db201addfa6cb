# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import itertools

import pytest

from pools.lifecycle import (
    WORKSPACE_LIFECYCLE,
    IllegalTransition,
    State,
    log_step,
    transition,
)
from pools.models import Workspace
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


def test_steps_are_events_within_a_state(member, starter, workspace_factory):
    workspace = workspace_factory(member, starter, state=State.PROVISIONING)
    log_step(workspace, "directory created")
    assert [e.message for e in workspace.steps()] == ["directory created"]


def test_a_pool_lifecycle_extends_the_workspace_one_without_changing_it():
    pool = WORKSPACE_LIFECYCLE.extend({State.READY: {State.CLAIMED}})
    assert pool.allows(State.READY, State.CLAIMED)
    assert pool.allows(State.READY, State.DELETING)
    assert not WORKSPACE_LIFECYCLE.allows(State.READY, State.CLAIMED)
