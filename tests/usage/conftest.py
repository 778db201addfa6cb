from datetime import UTC, datetime

import pytest
from django.utils import timezone as django_timezone

from tests.workspace_fixtures import workspace_factory  # noqa: F401


class Clock:
    """Time travel: every `timezone.now()` (field defaults included) reads `current`."""

    def __init__(self, start: datetime):
        self.current = start

    def set(self, when: datetime) -> datetime:
        self.current = when
        return when


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return clock.current.astimezone(tz) if tz else clock.current.replace(tzinfo=None)

    # `django.utils.timezone.now()` calls `datetime.now(tz=...)` of its module's `datetime`.
    monkeypatch.setattr(django_timezone, "datetime", FrozenDatetime)
    return clock
