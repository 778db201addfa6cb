"""The periodic schedules of the pools app, created once and kept in shape.

They are created by a data migration (so every deployment that runs `migrate` has them,
whatever process starts first) and `ensure_schedules()` is idempotent, so running it again
(e.g. from a test, or after an administrator deleted a schedule) restores them.
"""

SWEEP_NAME = "pools: sweep"
SWEEP_MINUTES = 1


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
