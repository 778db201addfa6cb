"""The one lifecycle state machine of everything the portal provisions.

Workspaces add stop/start edges to the base (`ready → stopping → stopped → starting →
ready`); warm-pool instances (issue 6) add one other edge (`ready → claimed`); both by
calling `BASE_LIFECYCLE.extend(...)`. The transitions are data,
so adding a state never means editing the code that moves between them. Each lifecycle
also declares in which states an object may hold infrastructure resources
(`holds_resources`): the sweep reaps only what no such object owns.

Every state change and every event row goes through this module:
- `create()` / `create_many()`: a new object in its first state, with its event.
- `transition()`: a conditional UPDATE (`... WHERE id = X AND state = old`): when two
  workers try to move the same object, exactly one UPDATE changes a row; the other sees 0
  rows and `transition()` returns False so that worker moves on. A new state is a new
  phase with retries of its own (`pools.steps.retry_or_fail`): the move sets `attempts`
  back to 0.
- `advance()`: the same for a path of several edges, in the same two statements.
- `claim()`: the same move for ONE object chosen by a query among many (the warm-pool
  claim), in one statement that skips rows other transactions hold; or that object taken
  within its state (a warm instance promised while it provisions).
- `log_step()`: an event for a step done within a state.
Each writes its event row (timestamp, actor or None for the system, message, from/to
state) in the same transaction as the change. A model's events are its reverse relation
`events` (a `LifecycleEvent` subclass), written by its `log_event()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from django.conf import settings
from django.db import connections, models, transaction
from django.utils import timezone


class State(models.TextChoices):
    REQUESTED = "requested", "Requested"
    PROVISIONING = "provisioning", "Provisioning"
    READY = "ready", "Ready"
    DEGRADED = "degraded", "Degraded"  # ready, but a check failed: being repaired (issue 12)
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
    """States and the edges between them; `extend()` makes a variant with more edges.

    `reapable` are the states in which the object keeps no infrastructure resources: what
    is still found under its name there belongs to nobody and the sweep may delete it. In
    every other state the object may hold resources (a failed workspace keeps its files
    until it is deleted), and they are never reaped.
    """

    edges: dict[str, frozenset[str]]
    reapable: frozenset[str] = field(default=frozenset({State.DELETED}))

    @property
    def states(self) -> list[str]:
        return sorted(set(self.edges) | {s for targets in self.edges.values() for s in targets})

    def allows(self, from_state: str, to_state: str) -> bool:
        return to_state in self.edges.get(from_state, frozenset())

    def check(self, from_state: str, to_state: str) -> None:
        if not self.allows(from_state, to_state):
            raise IllegalTransition(from_state, to_state)

    def holds_resources(self, state: str) -> bool:
        return state not in self.reapable

    @property
    def holding_states(self) -> list[str]:
        """The states in which an object may hold resources (the sweep keeps them)."""
        return [state for state in self.states if self.holds_resources(state)]

    def extend(self, extra: dict[str, set[str]], reapable: set[str] = frozenset()) -> Lifecycle:
        edges = dict(self.edges)
        for from_state, targets in extra.items():
            edges[from_state] = edges.get(from_state, frozenset()) | frozenset(targets)
        return Lifecycle(edges, self.reapable | frozenset(reapable))


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

# Watched workspaces (issue 12, `pools.watch`): a ready workspace whose check fails (its
# directory, GPUs, node, process or a service is gone) is degraded with the reason; the
# watcher repairs it (back to ready) or, after a bounded number of attempts, fails it. A
# degraded workspace may still be stopped or deleted by its owner. Services stacks are
# watched with the same edges (`services.models.SERVICES_LIFECYCLE`).
WATCHED_EDGES = {
    State.READY: {State.DEGRADED},
    State.DEGRADED: {State.READY, State.FAILED, State.DELETING},
}
WORKSPACE_LIFECYCLE = WORKSPACE_LIFECYCLE.extend(WATCHED_EDGES).extend(
    {State.DEGRADED: {State.STOPPING}}
)

# Warm-pool instances (issue 6): the base lifecycle plus the claim (they are never stopped).
# A claimed instance is done: its resources now belong to the workspace that adopted it,
# which deletes them (the sweep keeps them while that workspace holds resources). A failed
# instance is done too: its release already ran (`pools.tasks`) and it never carries a
# user's data, so whatever is left of it is the sweep's to reap; nothing else would free
# the GPUs it may still hold.
POOL_LIFECYCLE = BASE_LIFECYCLE.extend(
    {State.READY: {State.CLAIMED}}, reapable={State.CLAIMED, State.FAILED}
)

# States in which the object counts as live: against quotas, and for "one live stack per
# workspace". A stopped workspace still holds its files / volumes / cluster. A failed one
# counts against nothing, but may still hold resources (`Lifecycle.holds_resources`).
LIVE_STATES = (
    State.REQUESTED,
    State.PROVISIONING,
    State.READY,
    State.DEGRADED,
    State.CLAIMED,
    State.DELETING,
    State.STOPPING,
    State.STOPPED,
    State.STARTING,
)
# Live states that hold (or are about to hold) GPUs: all but stopped (GPU quotas count these).
GPU_STATES = tuple(state for state in LIVE_STATES if state != State.STOPPED)
# States a worker is expected to move the object out of by itself (a degraded one: the
# watcher, which repairs or fails it).
IN_FLIGHT_STATES = (
    State.REQUESTED,
    State.PROVISIONING,
    State.DEGRADED,
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


def _user(actor):
    """The actor to record: an authenticated user, else None (the system)."""
    return actor if actor is not None and actor.is_authenticated else None


def create(model: type[LifecycleModel], *, actor=None, message: str, **fields) -> LifecycleModel:
    """Insert a new object in its first state (requested) with its event; return it."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        obj = model._base_manager.create(**{"state_changed": now, "heartbeat": now, **fields})
        obj.log_event(obj.state, obj.state, message, actor=_user(actor))
    return obj


def create_many(objs: list[LifecycleModel], *, message: str) -> list[LifecycleModel]:
    """Insert `objs` and one event each (by the system): two INSERTs however many."""
    if not objs:
        return []
    model = type(objs[0])
    events = model._meta.get_field("events")  # the reverse relation of the event rows
    with transaction.atomic(savepoint=False):
        made = model._base_manager.bulk_create(objs)  # ids come back (RETURNING)
        events.related_model._base_manager.bulk_create(
            events.related_model(
                **{events.field.name: obj},
                from_state=obj.state,
                to_state=obj.state,
                message=message[:300],
            )
            for obj in made
        )
    return made


def transition(
    obj: LifecycleModel, to_state: str, *, actor=None, message: str = "", **fields
) -> bool:
    """Move `obj` from its current state to `to_state`; return False if another worker did.

    Raises IllegalTransition when the lifecycle has no such edge. `fields` are written in
    the same UPDATE (e.g. `ready_at`, `failure_reason`), after a LifecycleModel's
    `attempts` = 0 (the new state's retries count from zero). On success `obj` is updated
    in place.
    """
    return advance(obj, [Step(to_state, message, actor)], **fields)


@dataclass(frozen=True)
class Step:
    """One edge of `advance()`'s path: the state it reaches and its event's message."""

    to_state: str
    message: str = ""
    actor: object = None


def advance(obj: LifecycleModel, steps: list[Step], **fields) -> bool:
    """Move `obj` along several edges at once, each checked and each with its event, in
    two statements: ONE conditional UPDATE to the last state and ONE INSERT of the events
    (a warm claim takes a workspace from requested through provisioning to ready while
    its user waits). False, with nothing written, if another worker moved `obj` first.
    """
    from_state = obj.state
    path = [from_state, *(step.to_state for step in steps)]
    for before, after in pairwise(path):
        obj.lifecycle.check(before, after)
    now = timezone.now()
    updates = {"state": path[-1], "state_changed": now, "heartbeat": now}
    if isinstance(obj, LifecycleModel):  # a node partition moves here too, and never retries
        # Attempts counted in one state (`steps.retry_or_fail`) are not the next one's: a
        # deletion after a provisioning that needed five tries gets all its own.
        updates["attempts"] = 0
    updates.update(fields)
    relation = type(obj)._meta.get_field("events")  # the reverse relation of the event rows
    events = [
        relation.related_model(
            **{relation.field.name: obj},
            from_state=before,
            to_state=step.to_state,
            message=step.message[:300],
            actor=_user(step.actor),
            timestamp=now,
        )
        for before, step in zip(path, steps, strict=False)
    ]
    # No savepoint (two statements fewer inside a caller's transaction): a failure here
    # fails the caller's transaction too, which must not go on after a lost state change.
    with transaction.atomic(savepoint=False):
        changed = type(obj)._base_manager.filter(pk=obj.pk, state=from_state).update(**updates)
        if changed != 1:
            return False
        relation.related_model._base_manager.bulk_create(events)
    for name, value in updates.items():
        setattr(obj, name, value)
    return True


def claim(
    candidates,
    to_state: str,
    *,
    from_state: str,
    actor=None,
    message: str = "",
    key=None,
    returning: tuple[str, ...] | None = None,
    **fields,
) -> LifecycleModel | None:
    """Move ONE object among `candidates` (the first in their order) from `from_state` to
    `to_state`, write its event, and return it; None when no candidate is free.

    `candidates` is any query of a lifecycle model; it becomes the subquery that selects
    the row, so the move is ONE statement. On PostgreSQL the event is written by the same
    statement, so a claim is one round trip, atomic even outside a transaction:

        WITH claimed AS (UPDATE … SET state = new, …
                         WHERE id = (SELECT id … AND state = old
                                     LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING …),
             logged AS (INSERT INTO <events> (…) SELECT …, id FROM claimed)
        SELECT * FROM claimed

    Concurrent claimants skip the rows other transactions hold instead of waiting for
    them, and each row goes to exactly one of them. On SQLite, `UPDATE … RETURNING`
    without the lock clause (SQLite runs one writer at a time, and the statement reads and
    writes under its write lock), then the event, in one transaction. Without UPDATE …
    RETURNING (SQLite before 3.35) each of a few candidates is tried with a conditional
    UPDATE until one changes. Raises IllegalTransition when the lifecycle has no such edge;
    `to_state == from_state` takes the object within its state (a step, e.g. a warm
    instance promised while it provisions, `pools.promises`). `fields` are written in the
    same UPDATE.

    A claim is on the path a user waits on, so it can skip the ORM's work:
    - `key` (hashable) names the candidate set exactly, e.g. ("ready", profile id,
      version): the statement is compiled once per key and reused, and `candidates` may
      be a function that builds the query, called only the first time;
    - `returning`: the fields the caller reads (the primary key always comes back); the
      others are deferred, so no JSON is parsed and no secret decrypted that nobody reads.
    """
    now = timezone.now()
    updates = {"state": to_state, "state_changed": now, "heartbeat": now, **fields}
    event = {
        "timestamp": now,
        "actor": _user(actor),
        "from_state": from_state,
        "to_state": to_state,
        "message": message[:300],
    }
    cache_key = (key, from_state, to_state, tuple(updates), returning)
    statement = _CLAIM_STATEMENTS.get(cache_key) if key is not None else None
    if statement is None:
        queryset = candidates() if callable(candidates) else candidates
        if to_state != from_state:  # the same state: a step within it (a promise)
            queryset.model.lifecycle.check(from_state, to_state)
        queryset = queryset.filter(state=from_state)
        connection = connections[queryset.db]
        if not _updates_returning(connection):
            with transaction.atomic(using=queryset.db, savepoint=False):
                obj = _claim_one_by_one(queryset, updates)
                if obj is not None:
                    obj.log_event(from_state, to_state, message, actor=event["actor"])
            return obj
        statement = _ClaimStatement.compile(queryset, list(updates), list(event), returning)
        if key is not None:
            if len(_CLAIM_STATEMENTS) >= CLAIM_STATEMENTS_KEPT:
                _CLAIM_STATEMENTS.clear()  # candidate sets come and go (profile versions)
            _CLAIM_STATEMENTS[cache_key] = statement
    if statement.logs_event:
        return statement.run(updates, event)
    with transaction.atomic(using=statement.db, savepoint=False):
        obj = statement.run(updates)
        if obj is not None:
            obj.log_event(from_state, to_state, message, actor=event["actor"])
    return obj


CLAIM_STATEMENTS_KEPT = 1000
_CLAIM_STATEMENTS: dict = {}  # `claim()`'s compiled statements, per process, by key


@dataclass(frozen=True)
class _ClaimStatement:
    """The one `UPDATE … RETURNING` of `claim()`, compiled: SQL and the candidates'
    parameters; with its event row on PostgreSQL (a data-modifying WITH)."""

    model: type
    db: str
    sql: str
    choice_params: tuple
    # What the statement returns, in the model's field order: each column with the
    # converters that turn its database value into the field's.
    converters: tuple
    logs_event: bool

    @classmethod
    def compile(cls, candidates: models.QuerySet, updates: list, event: list, returning):
        model, db = candidates.model, candidates.db
        connection = connections[db]
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        # Django compiles FOR UPDATE only inside a transaction; this statement is atomic by
        # itself, so the lock clause is added here (after LIMIT, where PostgreSQL wants it).
        choice_sql, choice_params = candidates.values("pk")[:1].query.sql_with_params()
        if connection.features.has_select_for_update_skip_locked:
            choice_sql += " " + connection.ops.for_update_sql(skip_locked=True, of=(table,))
        wanted = None if returning is None else {*returning, model._meta.pk.name}
        returned = [
            field
            for field in model._meta.concrete_fields
            if wanted is None or field.name in wanted or field.attname in wanted
        ]
        pk = quote(model._meta.pk.column)
        # No second `AND state = old` outside the subquery: the subquery checked it on the
        # row it locked (SQLite: in the same statement under the write lock), and an outer
        # one makes PostgreSQL's planner scan every row in that state instead of taking the
        # row by its key.
        sql = (
            f"UPDATE {table} SET {', '.join(f'{quote(_column(model, n))} = %s' for n in updates)} "
            f"WHERE {pk} = ({choice_sql}) "
            f"RETURNING {', '.join(quote(field.column) for field in returned)}"
        )
        logs_event = connection.vendor == "postgresql"
        if logs_event:
            relation = model._meta.get_field("events")  # the reverse relation of the events
            events = relation.related_model
            event_columns = [quote(_column(events, name)) for name in event]
            sql = (
                f"WITH claimed AS ({sql}), logged AS ("
                f"INSERT INTO {quote(events._meta.db_table)} "
                f"({', '.join([*event_columns, quote(relation.field.column)])}) "
                f"SELECT {', '.join(['%s'] * len(event_columns))}, {pk} FROM claimed) "
                "SELECT * FROM claimed"
            )
        columns = [field.get_col(model._meta.db_table) for field in returned]
        converters = tuple(
            (
                column,
                connection.ops.get_db_converters(column) + column.get_db_converters(connection),
            )
            for column in columns
        )
        return cls(model, db, sql, tuple(choice_params), converters, logs_event)

    def run(self, updates: dict, event: dict | None = None):
        connection = connections[self.db]
        params = [*_prepared(self.model, updates, connection)[1], *self.choice_params]
        if event is not None:
            relation = self.model._meta.get_field("events")
            params += _prepared(relation.related_model, event, connection)[1]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        values = []
        # As the ORM loads them: JSON parsed, secrets decrypted (only the columns returned).
        for (column, converters), value in zip(self.converters, row, strict=True):
            for converter in converters:
                value = converter(value, column, connection)
            values.append(value)
        attnames = [column.target.attname for column, _ in self.converters]
        return self.model.from_db(self.db, attnames, values)


def _column(model, name: str) -> str:
    return model._meta.get_field(name).column


def _prepared(model, values: dict, connection) -> tuple[list[str], list]:
    """Quoted columns and database values of `values` (field name → Python value)."""
    columns, params = [], []
    for name, value in values.items():
        model_field = model._meta.get_field(name)
        columns.append(connection.ops.quote_name(model_field.column))
        if isinstance(value, models.Model):
            value = value.pk
        params.append(model_field.get_db_prep_save(value, connection=connection))
    return columns, params


FALLBACK_CANDIDATES = 5  # without UPDATE … RETURNING: candidates tried before giving up


def _claim_one_by_one(candidates: models.QuerySet, updates: dict):
    model = candidates.model
    for pk in candidates.values_list("pk", flat=True)[:FALLBACK_CANDIDATES]:
        if candidates.filter(pk=pk).update(**updates) == 1:
            return model._base_manager.using(candidates.db).get(pk=pk)
    return None


def _updates_returning(connection) -> bool:
    """Whether the database has UPDATE … RETURNING and a same-table subquery in UPDATE."""
    if connection.vendor == "postgresql":
        return True
    return connection.vendor == "sqlite" and connection.features.can_return_columns_from_insert


def log_step(obj: LifecycleModel, message: str, actor=None) -> None:
    """Record a step done within the current state ("directory created")."""
    obj.log_event(obj.state, obj.state, message, actor=_user(actor))
