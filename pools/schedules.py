"""The periodic schedules of the pools app, created once and kept in shape.

They are created by a data migration (so every deployment that runs `migrate` has them,
whatever process starts first) and `ensure_schedules()` is idempotent, so running it again
(e.g. from a test, or after an administrator deleted a schedule) restores them.
"""

SWEEP_NAME = "pools: sweep"
SWEEP_MINUTES = 1
WARM_POOL_LOOP_NAME = "pools: warm-pool loop"
WARM_POOL_LOOP_MINUTES = 1
INFRASTRUCTURE_HEALTH_NAME = "pools: infrastructure health"
INFRASTRUCTURE_HEALTH_MINUTES = 5
WATCH_NAME = "pools: watch"
WATCH_MINUTES = 1

IDLE_NAME = "pools: idle workspaces and expiry"
IDLE_MINUTES = 5
NOTICES_NAME = "pools: workspace notifications"
NOTICES_MINUTES = 1


def ensure_schedules(schedule_model=None) -> None:
    if schedule_model is None:
        from django_q.models import Schedule as schedule_model
    schedule_model.objects.update_or_create(
        name=SWEEP_NAME,
        defaults={
            "func": "pools.tasks.sweep",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": SWEEP_MINUTES,
            "repeats": -1,
        },
    )
    # The warm-pool control loop (pools.warmpool.run_loop). It runs on the default cluster's
    # scheduler; the pass is short, and the instance provisioning it enqueues goes to the
    # pool cluster when one is configured.
    schedule_model.objects.update_or_create(
        name=WARM_POOL_LOOP_NAME,
        defaults={
            "func": "pools.warmpool.run_loop",
            "schedule_type": "I",
            "minutes": WARM_POOL_LOOP_MINUTES,
            "repeats": -1,
        },
    )
    # Every infrastructure entry's health check (pools.health.check_all enqueues one task
    # per entry, so a slow cluster delays no other).
    schedule_model.objects.update_or_create(
        name=INFRASTRUCTURE_HEALTH_NAME,
        defaults={
            "func": "pools.health.check_all",
            "schedule_type": "I",
            "minutes": INFRASTRUCTURE_HEALTH_MINUTES,
            "repeats": -1,
        },
    )
    # Watched workspaces (pools.watch.sweep): ready ones checked, degraded ones repaired.
    schedule_model.objects.update_or_create(
        name=WATCH_NAME,
        defaults={
            "func": "pools.watch.sweep",
            "schedule_type": "I",
            "minutes": WATCH_MINUTES,
            "repeats": -1,
        },
    )
    # Idle workspaces and lifetimes (pools.idle.sweep): warn, stop, expiry warnings.
    schedule_model.objects.update_or_create(
        name=IDLE_NAME,
        defaults={
            "func": "pools.idle.sweep",
            "schedule_type": "I",
            "minutes": IDLE_MINUTES,
            "repeats": -1,
        },
    )
    # Owners told of their workspaces' transitions (pools.notices.notify_workspace_events).
    schedule_model.objects.update_or_create(
        name=NOTICES_NAME,
        defaults={
            "func": "pools.notices.notify_workspace_events",
            "schedule_type": "I",
            "minutes": NOTICES_MINUTES,
            "repeats": -1,
        },
    )
