"""The ledger's periodic pass, created by a data migration and kept in shape (idempotent,
like `pools.schedules`)."""

LEDGER_NAME = "usage: ledger"
LEDGER_MINUTES = 5


def ensure_schedules(schedule_model=None) -> None:
    if schedule_model is None:
        from django_q.models import Schedule as schedule_model
    schedule_model.objects.update_or_create(
        name=LEDGER_NAME,
        defaults={
            "func": "usage.ledger.run",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": LEDGER_MINUTES,
            "repeats": -1,
        },
    )
