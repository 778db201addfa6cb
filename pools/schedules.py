"""The periodic schedules of the pools app (created by a data migration and kept in shape:
see `portal.schedules`)."""

from portal.schedules import every

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
    every(SWEEP_MINUTES, SWEEP_NAME, "pools.tasks.sweep", schedule_model)
    # The warm-pool control loop (pools.warmpool.run_loop). It runs on the default cluster's
    # scheduler; the pass is short, and the instance provisioning it enqueues goes to the
    # pool cluster when one is configured.
    every(WARM_POOL_LOOP_MINUTES, WARM_POOL_LOOP_NAME, "pools.warmpool.run_loop", schedule_model)
    # Every infrastructure entry's health check (pools.health.check_all enqueues one task
    # per entry, so a slow cluster delays no other).
    every(
        INFRASTRUCTURE_HEALTH_MINUTES,
        INFRASTRUCTURE_HEALTH_NAME,
        "pools.health.check_all",
        schedule_model,
    )
    # Watched workspaces (pools.watch.sweep): ready ones checked, degraded ones repaired.
    every(WATCH_MINUTES, WATCH_NAME, "pools.watch.sweep", schedule_model)
    # Idle workspaces and lifetimes (pools.idle.sweep): warn, stop, expiry warnings.
    every(IDLE_MINUTES, IDLE_NAME, "pools.idle.sweep", schedule_model)
    # Owners told of their workspaces' transitions (pools.notices.notify_workspace_events).
    every(NOTICES_MINUTES, NOTICES_NAME, "pools.notices.notify_workspace_events", schedule_model)
