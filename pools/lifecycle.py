"""The one lifecycle state machine of everything the portal provisions.

Workspaces add stop/start edges to the base (`ready → stopping → stopped → starting →
ready`); warm-pool instances (issue 6) add one other edge (`ready → claimed`); both by
calling `BASE_LIFECYCLE.extend(...)`. The transitions are data,
so adding a state never means editing the code that moves between them.

A transition is a conditional UPDATE (`... WHERE id = X AND state = old`): when two workers
try to move the same object, exactly one UPDATE changes a row; the other sees 0 rows and
`transition()` returns False so that worker moves on. Every transition writes an event row
(timestamp, actor or None for the system, message, from/to state) in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone


class State(models.TextChoices):
    REQUESTED = "requested", "Requested"
    PROVISIONING = "provisioning", "Provisioning"
    READY = "ready", "Ready"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    STARTING = "starting", "Starting"
    CLAIMED = "claimed", "Claimed"  # warm-pool instances only (issue 6)
    DELETING = "deleting", "Deleting"
    DELETED = "deleted", "Deleted"
    FAILED = "failed", "Failed"


class IllegalTransition(Exception):
    """The lifecycle has no edge from the current state to the requested one."""

    def __init__(self, from_state: str, to_state: str):
        super().__init__(f"cannot go from {from_state} to {to_state}")
        self.from_state = from_state
        self.to_state = to_state


@dataclass(frozen=True)
class Lifecycle:
    """States and the edges between them; `extend()` makes a variant with more edges."""

    edges: dict[str, frozenset[str]]

    @property
    def states(self) -> list[str]:
        return sorted(set(self.edges) | {s for targets in self.edges.values() for s in targets})

    def allows(self, from_state: str, to_state: str) -> bool:
        return to_state in self.edges.get(from_state, frozenset())

    def check(self, from_state: str, to_state: str) -> None:
        if not self.allows(from_state, to_state):
            raise IllegalTransition(from_state, to_state)

    def extend(self, extra: dict[str, set[str]]) -> Lifecycle:
        edges = dict(self.edges)
        for from_state, targets in extra.items():
            edges[from_state] = edges.get(from_state, frozenset()) | frozenset(targets)
        return Lifecycle(edges)


BASE_LIFECYCLE = Lifecycle(
    {
        # A request may be cancelled (deleting) before a worker picks it up.
        State.REQUESTED: frozenset({State.PROVISIONING, State.DELETING, State.FAILED}),
        State.PROVISIONING: frozenset({State.READY, State.DELETING, State.FAILED}),
        State.READY: frozenset({State.DELETING}),
        State.DELETING: frozenset({State.DELETED, State.FAILED}),
        # A failed workspace may still hold resources: deleting it releases them.
        State.FAILED: frozenset({State.DELETING}),
        State.DELETED: frozenset(),
    }
)

# Workspaces (issue 5): stop a ready workspace (its GPUs are released, its files and volumes
# kept) and start it again. Deleting stays possible at every step, as while provisioning.
# A start that cannot get its resources goes back to stopped (files kept, reason shown);
# failed is for a stop or start the driver could not finish.
WORKSPACE_LIFECYCLE = BASE_LIFECYCLE.extend(
    {
        State.READY: {State.STOPPING},
        State.STOPPING: {State.STOPPED, State.FAILED, State.DELETING},
        State.STOPPED: {State.STARTING, State.DELETING},
        State.STARTING: {State.READY, State.STOPPED, State.FAILED, State.DELETING},
    }
)

# Warm-pool instances (issue 6): the base lifecycle plus the claim (they are never stopped).
# A claimed instance is done: its resources now belong to the workspace that adopted it,
# which deletes them.
POOL_LIFECYCLE = BASE_LIFECYCLE.extend({State.READY: {State.CLAIMED}})

# States in which the object may hold (or is about to hold) infrastructure resources. A
# stopped workspace still holds its files / volumes / cluster, so the sweep must not reap it.
LIVE_STATES = (
    State.REQUESTED,
    State.PROVISIONING,
    State.READY,
    State.CLAIMED,
    State.DELETING,
    State.STOPPING,
    State.STOPPED,
    State.STARTING,
)
# Live states that hold (or are about to hold) GPUs: all but stopped (GPU quotas count these).
GPU_STATES = tuple(state for state in LIVE_STATES if state != State.STOPPED)
# States a worker is expected to move the object out of by itself.
IN_FLIGHT_STATES = (
    State.REQUESTED,
    State.PROVISIONING,
    State.DELETING,
    State.STOPPING,
    State.STARTING,
)


class LifecycleModel(models.Model):
    """Abstract base of a model that moves through a `Lifecycle`.

    A concrete model sets `lifecycle` and implements `log_event()` to write its event row.
    """

    lifecycle: Lifecycle = WORKSPACE_LIFECYCLE

    state = models.CharField(
        max_length=20, choices=State.choices, default=State.REQUESTED, db_index=True
    )
    state_changed = models.DateTimeField(default=timezone.now)
    # Last time a worker touched the object, or when the next attempt is due; the sweep
    # resumes objects in flight whose heartbeat is too old.
    heartbeat = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    failure_reason = models.CharField(max_length=300, blank=True)
    failure_detail = models.TextField(blank=True, help_text="For administrators only.")

    class Meta:
        abstract = True

    def log_event(self, from_state: str, to_state: str, message: str, actor=None):
        raise NotImplementedError

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT_STATES


class LifecycleEvent(models.Model):
    """Abstract base of the event rows: a transition, or a step done within a state."""

    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    from_state = models.CharField(max_length=20, choices=State.choices)
    to_state = models.CharField(max_length=20, choices=State.choices)
    message = models.CharField(max_length=300, blank=True)

    class Meta:
        abstract = True
        ordering = ["timestamp", "id"]

    @property
    def is_transition(self) -> bool:
        return self.from_state != self.to_state

    @property
    def actor_name(self) -> str:
        return self.actor.get_username() if self.actor_id else "system"


def transition(
    obj: LifecycleModel, to_state: str, *, actor=None, message: str = "", **fields
) -> bool:
    """Move `obj` from its current state to `to_state`; return False if another worker did.

    Raises IllegalTransition when the lifecycle has no such edge. `fields` are written in
    the same UPDATE (e.g. `ready_at`, `failure_reason`). On success `obj` is updated in place.
    """
    from_state = obj.state
    obj.lifecycle.check(from_state, to_state)
    now = timezone.now()
    updates = {"state": to_state, "state_changed": now, "heartbeat": now, **fields}
    user = actor if actor is not None and actor.is_authenticated else None
    with transaction.atomic():
        changed = type(obj)._base_manager.filter(pk=obj.pk, state=from_state).update(**updates)
        if changed != 1:
            return False
        obj.log_event(from_state, to_state, message, actor=user)
    for name, value in updates.items():
        setattr(obj, name, value)
    return True


def log_step(obj: LifecycleModel, message: str) -> None:
    """Record a step done within the current state ("directory created"), once."""
    obj.log_event(obj.state, obj.state, message, actor=None)
