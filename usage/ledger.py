"""The usage ledger: intervals derived from lifecycle events, never sampled.

Every state change of a workspace or warm-pool instance is an event row written in the
same transaction as the change (`pools.lifecycle`). The ledger folds each object's events
into intervals, one per state: an interval is closed by the next event, and the last one
stays open (accounted up to "now" when read). Nothing is lost while a worker is down: the
events are there, and the next pass reads them.

A pass (`run`):
1. reads the cursor (`LedgerCursor`): the last event ids folded in, and when;
2. finds the objects with an event after the cursor, or written shortly before the last
   pass (an event of a transaction that committed after that pass read the table may have
   a smaller id than the cursor; `LATE_COMMIT_GRACE` is longer than any transaction here);
3. rebuilds each such object's intervals from all its events, in batches, each batch in
   one transaction (delete its rows, insert them again: idempotent); an object whose rows
   the database refuses is logged and skipped, the rest of its batch written;
4. moves the cursor to the highest event id it saw when it started.
A pass killed between batches leaves committed batches correct and the cursor unmoved, so
the next pass rebuilds them again and ends with the same rows.

What is charged, by state:
- a workspace holds its GPUs (or MIG slices) and cloud instances while provisioning, ready,
  degraded (being repaired), stopping, starting and deleting; its storage in those states
  and while stopped or failed (files kept); nothing while only requested, or once deleted;
- a warm-pool instance is idle while provisioning, ready and deleting: it holds its GPUs,
  charged to its profile (as no workspace-hours); once claimed, or promised to a workspace
  that waits for it, that workspace is charged.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import DataError, IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from pools import locks, promises
from pools.lifecycle import State
from pools.models import PoolInstance, PoolInstanceEvent, Workspace, WorkspaceEvent
from usage.models import LedgerCursor, UsageInterval, UsageShape
from usage.prices import Line, lines_of

logger = logging.getLogger(__name__)

LOCK_NAME = "usage-ledger"
LATE_COMMIT_GRACE = timedelta(minutes=15)
BATCH = 200

# A degraded workspace is being repaired: it still holds everything it ran with.
_RUNNING = {
    State.PROVISIONING,
    State.READY,
    State.DEGRADED,
    State.STOPPING,
    State.STARTING,
    State.DELETING,
}
_FILES_KEPT = {State.STOPPED, State.FAILED}
_WARM_IDLE = {State.PROVISIONING, State.READY, State.DELETING}


def spans(events) -> list[tuple[str, object, object]]:
    """(state, start, end) per state from events in order; the last span's end is None.

    The first event is the creation; a later event to the state already held is a step
    within it, not a change.
    """
    result: list[list] = []
    for event in events:
        if result and result[-1][0] == event.to_state:
            continue
        if result:
            result[-1][2] = event.timestamp
        result.append([event.to_state, event.timestamp, None])
    return [tuple(span) for span in result]


def _fallback_lines(workspace) -> list[Line]:
    """What a workspace whose profile was deleted held, from the counts it kept (a slice
    of unknown size counts as the smallest of 7)."""
    share = workspace.gpus + workspace.mig_slices / 7
    return [Line(gpus=workspace.gpus, mig_slices=workspace.mig_slices, gpu_share=share)]


def _held(line: Line, state: str, running: set[str], files_kept: set[str]) -> Line | None:
    """What `line` holds in `state`: everything while running, its storage while its files
    are kept, else nothing."""
    if state in running:
        return line
    if state in files_kept and line.storage_gb:
        return Line(storage_gb=line.storage_gb, provider=line.provider, region=line.region)
    return None


def intervals(
    kind: str, obj, lines, running, files_kept, events=None, **fields
) -> list[UsageInterval]:
    """The interval rows of one workspace or instance (its events prefetched, or as
    `events` gives them)."""
    rows = []
    for position, (state, start, end) in enumerate(spans(events or obj.events.all())):
        for index, line in enumerate(lines):
            held = _held(line, state, running, files_kept)
            if held is None or (end is not None and end <= start):
                continue
            rows.append(
                UsageInterval(
                    kind=kind,
                    source_id=obj.pk,
                    position=position * 100 + index,
                    state=state,
                    start=start,
                    end=end,
                    profile_id=obj.profile_id,
                    profile_name=obj.profile_name or str(obj.profile or ""),
                    infrastructure_id=obj.infrastructure_id,
                    infrastructure_name=obj.infrastructure_name or str(obj.infrastructure or ""),
                    provider=held.provider,
                    region=held.region,
                    gpu_model=held.gpu_model,
                    gpus=held.gpus,
                    mig_slices=held.mig_slices,
                    gpu_share=held.gpu_share,
                    instance_type=held.instance_type,
                    instances=held.instances,
                    storage_gb=held.storage_gb,
                    # Only a workspace's time is workspace-hours; a pool's is idle time.
                    counts_workspace=(
                        kind == UsageInterval.Kind.WORKSPACE and index == 0 and state in running
                    ),
                    **fields,
                )
            )
    return rows


def _lines(obj) -> list[Line]:
    if obj.profile_id is None:
        return _fallback_lines(obj) if isinstance(obj, Workspace) else []
    return lines_of(obj.profile)


def workspace_intervals(workspace: Workspace, lines: list[Line]) -> list[UsageInterval]:
    return intervals(
        UsageInterval.Kind.WORKSPACE,
        workspace,
        lines,
        _RUNNING,
        _FILES_KEPT,
        owner_id=workspace.owner_id,
        team_id=workspace.team_id,
    )


class _Mark(NamedTuple):
    to_state: str
    timestamp: datetime


PROMISED_SPAN = "promised"  # a span of an instance's life in which a workspace waited for it


def promise_marks(events) -> list[_Mark]:
    """The instance's events, with each time it was promised to a workspace that gave it
    back (`pools.promises`) as a span of its own, which is no pool idle time."""
    marks, promised = [], False
    for event in events:
        if event.message.startswith(promises.PROMISED):
            promised = True
        elif event.message.startswith(promises.GIVEN_BACK):
            promised = False
        marks.append(_Mark(PROMISED_SPAN if promised else event.to_state, event.timestamp))
    return marks


def instance_intervals(instance: PoolInstance, lines: list[Line]) -> list[UsageInterval]:
    """Idle until a workspace claims it, or is promised it while it provisions
    (`pools.promises`): from then on that workspace, waiting for it, is charged; so it
    is while a promise lasts that the workspace later gives back."""
    marks = promise_marks(instance.events.all())
    rows = intervals(UsageInterval.Kind.WARM_IDLE, instance, lines, _WARM_IDLE, set(), marks)
    taken = instance.claimed_at
    if taken is None:
        return rows
    kept = [row for row in rows if row.start < taken]
    for row in kept:
        if row.end is None or row.end > taken:
            row.end = taken
    return kept


_SOURCES = {
    UsageInterval.Kind.WORKSPACE: (Workspace, workspace_intervals),
    UsageInterval.Kind.WARM_IDLE: (PoolInstance, instance_intervals),
}


# What the ledger writes for one object: its shape (when it has none yet) and its rows.
_Built = tuple[UsageShape | None, list[UsageInterval]]


def rebuild(kind: str, ids) -> int:
    """Replace the intervals of these workspaces (or instances) by those their events give
    now; return how many rows were written. Idempotent: the same events, the same rows.

    Each is priced by what it held when the ledger first saw it (`UsageShape`, kept), not
    by its profile as edited since. A batch the database refuses (a value no column holds)
    is written again one object at a time, each in its own transaction, and the one at
    fault is logged and skipped: one object must not stop the ledger for everyone."""
    built = _build(kind, list(ids))
    try:
        return _write(kind, built)
    except (DataError, IntegrityError):
        return sum(_write_or_skip(kind, source_id, item) for source_id, item in built.items())


def _build(kind: str, ids: list[int]) -> dict[int, _Built]:
    """{id: (its shape when the ledger has none yet, its rows)}; no rows for an id whose
    object is gone."""
    model, make = _SOURCES[kind]
    objects = model._base_manager.filter(pk__in=ids).select_related(
        "profile__infrastructure", "infrastructure"
    )
    objects = objects.prefetch_related("events", "profile__resource_groups")
    kept = UsageShape.objects.filter(kind=kind, source_id__in=ids)
    shapes = {shape.source_id: [Line(**line) for line in shape.lines] for shape in kept}
    built: dict[int, _Built] = dict.fromkeys(ids, (None, []))
    for obj in objects:
        new_shape = None
        if obj.pk not in shapes:
            shapes[obj.pk] = _lines(obj)
            lines = [asdict(line) for line in shapes[obj.pk]]
            new_shape = UsageShape(kind=kind, source_id=obj.pk, lines=lines)
        built[obj.pk] = (new_shape, make(obj, shapes[obj.pk]))
    return built


def _write(kind: str, built: dict[int, _Built]) -> int:
    """Replace the rows of these objects in one transaction (a savepoint within another)."""
    rows = [row for _, object_rows in built.values() for row in object_rows]
    with transaction.atomic():
        new_shapes = [shape for shape, _ in built.values() if shape is not None]
        UsageShape.objects.bulk_create(new_shapes, ignore_conflicts=True)
        UsageInterval.objects.filter(kind=kind, source_id__in=list(built)).delete()
        UsageInterval.objects.bulk_create(rows)
    return len(rows)


def _write_or_skip(kind: str, source_id: int, item: _Built) -> int:
    try:
        return _write(kind, {source_id: item})
    except (DataError, IntegrityError):
        # Its rows stay as they were; the next event of it has it rebuilt again.
        logger.exception(
            "usage ledger: skipped %s %s, the database refused its rows", kind, source_id
        )
        return 0


def _dirty(event_model, source_field: str, after_id: int, since) -> tuple[list[int], int]:
    """Ids of the objects with events after `after_id` (or at/after `since`), and the
    highest event id now."""
    top = event_model.objects.aggregate(top=Max("id"))["top"] or 0
    changed = Q(id__gt=after_id)
    if since is not None:
        changed |= Q(timestamp__gte=since)
    ids = (
        event_model.objects.filter(changed, id__lte=top)
        .values_list(source_field, flat=True)
        .distinct()
        .order_by(source_field)
    )
    return list(ids), top


def run(now=None) -> dict[str, int]:
    """One pass of the ledger (see the module docstring); returns what it rebuilt. One
    pass at a time: two would rebuild the same rows at once."""
    with locks.try_lock(LOCK_NAME) as held:
        if not held:
            return {"skipped": 1}
        return _pass(now or timezone.now())


def _pass(now) -> dict[str, int]:
    cursor, _ = LedgerCursor.objects.get_or_create(pk=1)
    since = cursor.passed_at - LATE_COMMIT_GRACE if cursor.passed_at else None
    workspaces, workspace_top = _dirty(
        WorkspaceEvent, "workspace_id", cursor.workspace_event_id, since
    )
    instances, instance_top = _dirty(
        PoolInstanceEvent, "instance_id", cursor.instance_event_id, since
    )
    for kind, ids in (
        (UsageInterval.Kind.WORKSPACE, workspaces),
        (UsageInterval.Kind.WARM_IDLE, instances),
    ):
        for first in range(0, len(ids), BATCH):
            rebuild(kind, ids[first : first + BATCH])
    LedgerCursor.objects.filter(pk=1).update(
        workspace_event_id=workspace_top, instance_event_id=instance_top, passed_at=now
    )
    return {"workspaces": len(workspaces), "instances": len(instances)}
