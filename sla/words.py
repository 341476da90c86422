"""Durations as people read them: «2 ч 15 мин», «45 мин», «3 ч», «121 дн 15 ч»."""

from __future__ import annotations

from datetime import timedelta


def duration_text(minutes: int) -> str:
    """Whole minutes in hours and minutes: ``5 ч 10 мин``, ``45 мин``, ``2 ч``, ``-1 ч``."""
    sign = "-" if minutes < 0 else ""
    hours, rest = divmod(abs(minutes), 60)
    parts = [f"{hours} ч"] if hours else []
    if rest or not hours:
        parts.append(f"{rest} мин")
    return sign + " ".join(parts)


def days_text(minutes: int) -> str:
    """Whole minutes of wall-clock time: under a day as :func:`duration_text`, from a day
    on in days and hours (the minutes left out): ``2 ч 15 мин``, ``1 дн``, ``121 дн 15 ч``.

    Only for calendar time: a business day is shorter than 24 hours, so business minutes
    are read in hours (:func:`duration_text`)."""
    sign = "-" if minutes < 0 else ""
    whole = abs(minutes)
    if whole < 24 * 60:
        return duration_text(minutes)
    days, rest = divmod(whole // 60, 24)
    return sign + f"{days} дн" + (f" {rest} ч" if rest else "")


def span_text(span: timedelta) -> str:
    """A span in hours and minutes, with its seconds when it has any: ``4 ч 30 мин``,
    ``1 мин 5 с``."""
    seconds = int(span.total_seconds())
    minutes, rest = divmod(abs(seconds), 60)
    text = duration_text(minutes if seconds >= 0 else -minutes)
    if rest:
        text = f"{text} {rest} с" if minutes else f"{'-' if seconds < 0 else ''}{rest} с"
    return text
