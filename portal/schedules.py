"""Periodic tasks kept in shape: each app's `ensure_schedules()` lists its own with `every()`.

The apps' schedules are created by data migrations (so every deployment that runs `migrate`
has them, whatever process starts first) and `every()` is idempotent, so running them again
(from a test, or after an administrator deleted a schedule) restores them.
"""


def every(minutes: int, name: str, func: str, schedule_model=None) -> None:
    """Run `func` (a dotted path) every `minutes`, as the django-q2 schedule `name`.

    Migrations pass their historical `Schedule` model; everyone else gets the real one.
    """
    if schedule_model is None:
        from django_q.models import Schedule as schedule_model
    schedule_model.objects.update_or_create(
        name=name,
        defaults={
            "func": func,
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": minutes,
            "repeats": -1,
        },
    )
