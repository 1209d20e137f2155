"""The one clock of the application: UTC timestamps, Asia/Shanghai business dates.

Every "today" of the business (need_by, certificate validity, the default and the window of
``purchased_on``, the year a purchase belongs to, whether a year has ended) is the calendar date
in Asia/Shanghai, where the programme runs; timestamps are stored and shown in UTC. A purchase
made at 07:30 on 1 January in Guangzhou is 23:30 on 31 December in UTC: it belongs to the new
year, and only this module decides that.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

BUSINESS_TZ = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC (what every timestamp column stores)."""
    return datetime.now(UTC)


def business_date(instant: datetime) -> date:
    """The Asia/Shanghai calendar date of an aware instant."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime given; instants must be timezone-aware")
    return instant.astimezone(BUSINESS_TZ).date()


def business_today() -> date:
    """Today's date in Asia/Shanghai."""
    return business_date(utcnow())


def business_year() -> int:
    """The current business year (Asia/Shanghai)."""
    return business_today().year
