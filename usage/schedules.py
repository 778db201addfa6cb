"""The ledger's periodic pass (created by a data migration and kept in shape: see
`portal.schedules`)."""

from portal.schedules import every

LEDGER_NAME = "usage: ledger"
LEDGER_MINUTES = 5


def ensure_schedules(schedule_model=None) -> None:
    every(LEDGER_MINUTES, LEDGER_NAME, "usage.ledger.run", schedule_model)
