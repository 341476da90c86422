"""The report and the customer statements by mail, on a schedule, each once per recipient.

``SLA_REPORT_SCHEDULE`` is a cron expression in the policy's time zone. At each of its times
``run`` makes the report of the whole days since the previous time (``0 9 1 * *``: on the
1st at 09:00, the previous month), mails it to ``SLA_REPORT_TO`` (report.html attached, the
CSV tables zipped) and, with ``SLA_STATEMENT_EMAIL_FIELD``, each company's statement (its PDF,
or its HTML without Chromium) to the address in that company field.

**Once.** Every mail (a period's report or statement, to one recipient) has a row in the
state's record, written in the same discipline as the breach tasks (:mod:`worker.tasks`):
the mail is *claimed* durably, with the Message-ID it will carry, before the server is
asked; it is marked *sent* once the server has taken it, *failed* when the server did not
take it (it could not be reached, refused a recipient, found the message too large): a
clear log line, the worker goes on, and the mail is tried again every
``SLA_REPORT_RETRY_MINUTES`` until it is taken or the next report is due. A restart finds
what was sent in the record and sends nothing twice; a report due while the worker was
down is sent when it starts (if its time came after the worker's first start).

**At most once, not at least once.** Between handing a mail to the server and recording
its answer the worker may be killed (kill -9, a power cut). Mail gives no way to ask the
server afterwards whether it took the message, so a claim found without an answer is
marked *unknown* and never sent again; the log line (``report_mail_outcome_unknown``)
names the recipient and the Message-ID to look for in the mail server's log, and
``python -m worker report --mail-to`` sends it by hand. The window is the length of one
SMTP exchange. The other choice, sending again, would give the recipient (a customer) two
copies of a statement for every such crash; a missed monthly report is noticed and fixed
from the log line.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from amo_client.client import AmoClient
from amo_client.models import CustomField
from config.settings import cron_fields
from worker.mail import Attachment, MailError, SmtpServer, message, new_message_id, send
from worker.sla_report import StatementFiles, Written
from worker.sla_report.figures import Figures, Period
from worker.sla_report.render import percent_text, rate_text
from worker.store import MailMark, StateStore

log = structlog.get_logger("worker.delivery")

ALL_STATEMENTS = "*"  # the recipient of the row that says every statement of a period is done


# --- the schedule ----------------------------------------------------------------------------


class Schedule:
    """``SLA_REPORT_SCHEDULE``'s times in ``zone``, and the period each one reports on."""

    def __init__(self, cron: str, zone: ZoneInfo) -> None:
        self.cron = cron
        self.zone = zone
        fields = cron_fields(cron)
        if fields["day"] != "*" and fields["day_of_week"] != "*":
            # cron fires when either the day of the month or the weekday matches;
            # APScheduler's trigger would want both: one trigger for each.
            self.triggers = [
                CronTrigger(**{**fields, "day_of_week": "*"}, timezone=zone),
                CronTrigger(**{**fields, "day": "*"}, timezone=zone),
            ]
        else:
            self.triggers = [CronTrigger(**fields, timezone=zone)]

    def _first_from(self, start: datetime) -> datetime | None:
        """The earliest time at or after ``start``."""
        found = [
            moment
            for trigger in self.triggers
            if (moment := trigger.get_next_fire_time(None, start)) is not None
        ]
        return min(found, key=lambda moment: moment.astimezone(UTC), default=None)

    def check(self, now: datetime) -> None:
        """ValueError unless the schedule comes at most once a day (a report covers days)."""
        times = [self.next_after(now)]
        for _ in range(12):
            if times[-1] is None:
                break
            times.append(self.next_after(times[-1]))
        days = [moment.astimezone(self.zone).date() for moment in times if moment is not None]
        if not days:
            raise ValueError(f"SLA_REPORT_SCHEDULE: `{self.cron}` never comes")
        if len(set(days)) < len(days):
            raise ValueError(
                f"SLA_REPORT_SCHEDULE: `{self.cron}` comes more than once a day; a report "
                "covers whole days, e.g. `0 9 1 * *` (the 1st at 09:00: the month before)"
            )

    def next_after(self, moment: datetime) -> datetime | None:
        """The first time after ``moment``. A wall time that repeats (the hour an autumn
        clock change repeats) is one time, not two."""
        start = moment + timedelta(seconds=1)
        for _ in range(4):
            found = self._first_from(start)
            if found is None or found.astimezone(UTC) > moment.astimezone(UTC):
                if found is not None and found.replace(tzinfo=None) == moment.astimezone(
                    self.zone
                ).replace(tzinfo=None):
                    start = found + timedelta(hours=1)  # the same wall time, once more
                    continue
                return found
            start = found + timedelta(hours=1)
        return None

    def latest(self, now: datetime) -> datetime | None:
        """The last time at or before ``now``."""
        for days in (2, 40, 400, 3000):
            found: datetime | None = None
            moment = self._first_from(now - timedelta(days=days))
            while moment is not None and moment <= now:
                found = moment
                moment = self.next_after(moment)
            if found is not None:
                return found
        return None

    def period(self, time: datetime) -> Period:
        """The whole days from the previous time's day to the day before ``time``."""
        day = time.astimezone(self.zone).date()
        before = self.latest(time - timedelta(seconds=1))
        first = before.astimezone(self.zone).date() if before is not None else day
        return Period(min(first, day - timedelta(days=1)), day - timedelta(days=1), self.zone)


# --- the record's discipline -----------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    key: str  # the period's report or a company's statement
    recipient: str
    subject: str
    text: str
    attachments: tuple[Attachment, ...]


class Postman:
    """Sends each mail under the record: claimed before it goes, marked when answered."""

    def __init__(
        self,
        store: StateStore,
        server: SmtpServer,
        sender: str,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.server = server
        self.sender = sender
        self.clock = clock

    def open(self, key: str, recipient: str) -> bool:
        """Whether this mail is still to be sent: never claimed, or failed. A claim left
        without an answer (the worker stopped during the send) becomes unknown, once."""
        entry = self.store.mail_entry(key, recipient)
        if entry is None or entry.mark is MailMark.FAILED:
            return True
        if entry.mark is MailMark.SENDING:
            self.store.mark_mail(key, recipient, MailMark.UNKNOWN, self._at(), entry.problem)
            log.warning(
                "report_mail_outcome_unknown",
                key=key,
                recipient=recipient,
                message_id=entry.message_id,
                action="the worker stopped while this mail was being sent; it is not sent "
                "again (at most once): look for its Message-ID in the mail server's log, "
                "and send it by hand with `python -m worker report --mail-to` if it is not there",
            )
        return False

    def deliver(self, outgoing: Outgoing) -> bool:
        """Send ``outgoing`` unless the record says it went (or may have); True when the
        server took it now."""
        key, recipient = outgoing.key, outgoing.recipient
        if not self.open(key, recipient):
            return False
        message_id = new_message_id(self.sender)
        if not self.store.claim_mail(key, recipient, message_id, self._at()):
            return False
        mail = message(
            sender=self.sender,
            recipient=recipient,
            subject=outgoing.subject,
            text=outgoing.text,
            attachments=outgoing.attachments,
            message_id=message_id,
            date=self.clock(),
        )
        try:
            send(self.server, mail)
        except MailError as error:
            self.store.mark_mail(key, recipient, MailMark.FAILED, self._at(), error.problem)
            log.error(
                "report_mail_failed",
                key=key,
                recipient=recipient,
                server=self.server.shown(),
                problem=error.problem,
                action="tried again at the next retry (SLA_REPORT_RETRY_MINUTES)",
            )
            return False
        self.store.mark_mail(key, recipient, MailMark.SENT, self._at())
        log.info(
            "report_mail_sent",
            key=key,
            recipient=recipient,
            message_id=message_id,
            server=self.server.shown(),
        )
        return True

    def done(self, key: str, recipient: str) -> bool:
        entry = self.store.mail_entry(key, recipient)
        return entry is not None and entry.mark in (MailMark.SENT, MailMark.UNKNOWN)

    def _at(self) -> int:
        return int(self.clock().timestamp())


# --- the mails -------------------------------------------------------------------------------


def report_key(period: Period) -> str:
    return f"report:{period.first}:{period.last}"


def statement_key(period: Period, company_id: int) -> str:
    return f"statement:{period.first}:{period.last}:{company_id}"


def report_mail(figures: Figures, written: Written, recipient: str) -> Outgoing:
    """The report for the head of support: a summary in the text, report.html and the CSV
    tables (zipped) attached."""
    total = figures.total_row()
    now = figures.now_by_agent()
    lines = [
        f"Отчёт по SLA техподдержки за {figures.period.text()}.",
        "",
        f"Обращений: {total.requests}"
        + (
            f" (в прошлом периоде {total.before_requests})"
            if total.before_requests is not None
            else ""
        ),
        f"Реакция в срок: {rate_text(total.reaction)}",
        f"Решение в срок: {rate_text(total.resolution)}",
        f"Сейчас просрочено: {sum(a.breached for a in now)}, под угрозой: "
        f"{sum(a.at_risk for a in now)}",
        "",
        "Во вложении report.html (откройте в браузере; печатается на A4) и таблицы CSV "
        "(tables.zip).",
    ]
    tables = io.BytesIO()
    with zipfile.ZipFile(tables, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in written.csv:
            archive.write(path, path.name)
    return Outgoing(
        key=report_key(figures.period),
        recipient=recipient,
        subject=f"Отчёт по SLA за {figures.period.text()}: реакция в срок "
        f"{percent_text(total.reaction.percent)}, решение {percent_text(total.resolution.percent)}",
        text="\n".join(lines) + "\n",
        attachments=(
            Attachment("report.html", written.page.read_bytes(), "text/html"),
            Attachment("tables.zip", tables.getvalue(), "application/zip"),
        ),
    )


def statement_mail(
    figures: Figures, files: StatementFiles, recipient: str, *, provider: str
) -> Outgoing:
    """A customer's statement: its PDF (its page when no PDF was printed)."""
    document = files.pdf or files.page
    kind = "application/pdf" if files.pdf is not None else "text/html"
    name = f"Отчёт {figures.period.first:%Y-%m} {files.customer}{document.suffix}"
    signed = f"\n\n{provider}" if provider else ""
    return Outgoing(
        key=statement_key(figures.period, files.company_id),
        recipient=recipient,
        subject=f"Отчёт об оказанных услугах за {figures.period.text()}"
        + (f" — {provider}" if provider else ""),
        text=f"Здравствуйте!\n\nВо вложении отчёт об оказанных услугах технической поддержки "
        f"для {files.customer} за {figures.period.text()}: работы, учтённое время, остаток "
        f"пакета часов и работы сверх него.{signed}\n",
        attachments=(Attachment(_safe_name(name), document.read_bytes(), kind),),
    )


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in " .-_" else "_" for c in name)


def company_addresses(
    client: AmoClient, field: str, company_ids: Sequence[int]
) -> dict[int, tuple[str, ...]]:
    """Each company's addresses in ``field`` (an id, a name or a code such as ``EMAIL``)."""
    if not company_ids:
        return {}
    fields = list(client.iter_company_custom_fields())
    wanted = _field_of(fields, field)
    if wanted is None:
        names = ", ".join(sorted(f.name for f in fields))
        raise LookupError(
            f"SLA_STATEMENT_EMAIL_FIELD: no company field {field!r} (the account has: {names})"
        )
    found: dict[int, tuple[str, ...]] = {}
    for company in client.iter_companies(ids=sorted(company_ids)):
        values = company.field(wanted.id)
        addresses = tuple(
            str(value.value).strip()
            for value in (values.values if values is not None else ())
            if value.value and "@" in str(value.value)
        )
        found[company.id] = addresses
    return found


def _field_of(fields: Sequence[CustomField], wanted: str) -> CustomField | None:
    text = wanted.strip()
    for custom in fields:
        if text.isdigit() and custom.id == int(text):
            return custom
    folded = text.casefold()
    for custom in fields:
        if custom.name.casefold() == folded or (custom.code or "").casefold() == folded:
            return custom
    return None


# --- one tick of the schedule ----------------------------------------------------------------

MakeReport = Callable[[Period, Path], tuple[Figures, Written]]


@dataclass
class ScheduledReport:
    """What ``run`` does at each tick: mail the latest period's report and statements that
    are not sent yet."""

    schedule: Schedule
    postman: Postman
    make: MakeReport  # collect the period and write it (statements too) into a folder
    folder: Path  # where each period's files are written
    report_to: tuple[str, ...]
    first_start: Callable[[], datetime | None]
    addresses: Callable[[Sequence[int]], Mapping[int, tuple[str, ...]]] | None = None
    provider: str = ""

    def tick(self, now: datetime) -> Period | None:
        """Mail what is still to go of the latest period; that period, None when none is
        due since the worker first started on the account."""
        time = self.schedule.latest(now)
        since = self.first_start()
        if time is None or since is None or time < since:
            return None
        period = self.schedule.period(time)
        self.deliver(period)
        return period

    def deliver(self, period: Period) -> None:
        key = report_key(period)
        pending = [address for address in self.report_to if self.postman.open(key, address)]
        everything = f"statements:{period.first}:{period.last}"
        statements = self.addresses is not None and self.postman.open(everything, ALL_STATEMENTS)
        if not pending and not statements:
            log.debug("report_mail_done", period=period.text())
            return
        figures, written = self.make(period, self.folder / f"{period.first}_{period.last}")
        for address in pending:
            self.postman.deliver(report_mail(figures, written, address))
        if statements and self.addresses is not None:
            found = self.addresses([files.company_id for files in written.statements])
            self._statements(figures, written, found, everything)

    def _statements(
        self,
        figures: Figures,
        written: Written,
        addresses: Mapping[int, tuple[str, ...]],
        everything: str,
    ) -> None:
        complete = True
        for files in written.statements:
            found = addresses.get(files.company_id, ())
            if not found:
                log.warning(
                    "statement_without_address",
                    company_id=files.company_id,
                    company=files.customer,
                    problem="the company's SLA_STATEMENT_EMAIL_FIELD is empty: its statement "
                    "is not mailed",
                    page=str(files.page),
                )
            for address in found:
                outgoing = statement_mail(figures, files, address, provider=self.provider)
                self.postman.deliver(outgoing)
                complete &= self.postman.done(outgoing.key, address)
        if complete:
            store, at = self.postman.store, int(self.postman.clock().timestamp())
            if store.claim_mail(everything, ALL_STATEMENTS, "", at):
                store.mark_mail(everything, ALL_STATEMENTS, MailMark.SENT, at)


class ReportSchedule:
    """Runs a tick when the worker starts, at each time of the schedule, and every retry
    interval between them, on a thread of its own (the sync cycle does not wait for it).
    Started and stopped with the service, as a companion."""

    def __init__(
        self,
        schedule: Schedule,
        tick: Callable[[datetime], object],
        *,
        retry: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self.schedule = schedule
        self._tick = tick
        self._retry = retry
        self._clock = clock
        self._on_close = on_close
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        for index, trigger in enumerate(self.schedule.triggers):
            scheduler.add_job(self._run, trigger=trigger, id=f"report-schedule-{index}")
        scheduler.add_job(
            self._run,
            trigger=IntervalTrigger(seconds=self._retry.total_seconds(), timezone=UTC),
            id="report-retry",
        )
        scheduler.add_job(self._run, id="report-at-start", next_run_time=datetime.now(UTC))
        scheduler.start()
        self._scheduler = scheduler
        upcoming = self.schedule.next_after(self._clock())
        log.info(
            "report_schedule_started",
            schedule=self.schedule.cron,
            zone=self.schedule.zone.key,
            next_at=upcoming.isoformat() if upcoming else None,
            retry_minutes=round(self._retry.total_seconds() / 60),
        )

    def stop(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def close(self) -> None:
        """Stop, and let go of what the ticks used (the record's connection)."""
        self.stop()
        self._on_close()

    def _run(self) -> None:
        try:
            self._tick(self._clock())
        except Exception as error:  # the worker goes on; the next tick tries again
            log.error(
                "report_schedule_failed",
                error_type=type(error).__name__,
                error=str(error),
                action="tried again at the next retry (SLA_REPORT_RETRY_MINUTES)",
            )
