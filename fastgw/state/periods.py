"""UTC quota periods as AWS defines them: DAY, WEEK (offset 0 = Sunday), MONTH (offset = day - 1).

A period is identified by the UTC day number (days since 1970-01-01) on which it starts, so a
counter stamped with it resets by itself when the next period begins.
"""

from __future__ import annotations

import datetime as dt

DAY_SECONDS = 86400
_EPOCH = dt.date(1970, 1, 1)


def day_number(ts: float) -> int:
    """UTC day number of a Unix timestamp."""
    return int(ts // DAY_SECONDS)


def day_date(day: int) -> dt.date:
    return _EPOCH + dt.timedelta(days=day)


def date_day(d: dt.date) -> int:
    return (d - _EPOCH).days


def period_start(period: str, offset: int, day: int) -> int:
    """Day number on which the period containing ``day`` started."""
    if period == "DAY":
        return day
    if period == "WEEK":
        # 1970-01-01 was a Thursday: (day + 4) % 7 is 0 on Sundays.
        weekday = (day + 4) % 7  # 0 = Sunday
        return day - ((weekday - offset) % 7)
    if period == "MONTH":
        d = day_date(day)
        start = d.replace(day=offset + 1)
        if start > d:
            prev = (d.replace(day=1) - dt.timedelta(days=1)).replace(day=offset + 1)
            start = prev
        return date_day(start)
    raise ValueError(f"unknown quota period {period!r}")


def period_end(period: str, offset: int, day: int) -> int:
    """First day number of the next period (exclusive end of the one containing ``day``)."""
    start = period_start(period, offset, day)
    if period == "DAY":
        return start + 1
    if period == "WEEK":
        return start + 7
    d = day_date(start)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return date_day(dt.date(year, month, offset + 1))
