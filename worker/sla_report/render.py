"""The report as files: one CSV per table and ``report.html``, a page that needs nothing else.

The page is a Jinja2 template (``templates/report.html.j2``); the charts are pygal's
SVG, inlined into it without pygal's scripts, so the page loads nothing from anywhere,
opens offline and prints (A4) as it shows. CSV files are UTF-8 with a byte-order mark,
so spreadsheet programs read the Cyrillic right; numbers use a dot, and times stay in
minutes in columns of their own. The page shows times as people read them: «2 ч 15 мин»
for business time (a business day is shorter than 24 hours), days for wall-clock time.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from xml.etree import ElementTree

import jinja2
import pygal
from pygal.style import Style

from sla.words import days_text, duration_text
from worker.sla_report.figures import Figures, MetCounts, MetRow, Rate, Waiting
from worker.sla_report.next_response import has_next_response, wait_counts

Cell = str | int | Decimal | None
Shown = str | int | Decimal | Rate | None

GREEN, RED, GREY, BLUE, AMBER = "#2e9d5b", "#d64545", "#b8bfc7", "#3a6fd8", "#e0a526"
NOW_ROWS_SHOWN = 25  # the page lists this many of an agent's waiting requests; CSV all


@dataclass(frozen=True)
class Table:
    slug: str  # the CSV's file name without .csv
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""
    urls: tuple[str, ...] = ()  # a link per shown row, on its ``link_column`` (HTML only)
    link_column: int = 0
    numeric_from: int = 1  # columns from this one on are numbers (aligned right)
    quiet_rows: bool = False  # the page leaves out rows whose second column is 0
    # The page's own columns and cells, when they differ from the CSV's (times for people,
    # a met share with its goal and trend in one cell); one shown row per row.
    shown_headers: tuple[str, ...] = ()
    shown: tuple[tuple[Shown, ...], ...] = ()
    more: str = ""  # a line under the page's table: what it leaves out

    @property
    def page_headers(self) -> tuple[str, ...]:
        return self.shown_headers or self.headers

    @property
    def page_rows(self) -> tuple[tuple[Shown, ...], ...]:
        rows: Sequence[tuple[Shown, ...]] = self.shown or self.rows
        if not self.quiet_rows:
            return tuple(rows)
        return tuple(shown for shown, row in zip(rows, self.rows, strict=True) if row[1] != 0)

    @property
    def page_urls(self) -> tuple[str, ...]:
        if not self.quiet_rows:
            return self.urls
        return tuple(u for u, row in zip(self.urls, self.rows, strict=False) if row[1] != 0)


# --- times and shares for people -----------------------------------------------------------------


def whole_minutes(value: Decimal | int | None) -> int | None:
    if value is None:
        return None
    return int(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def business_time(minutes: Decimal | int | None) -> str:
    """Business minutes for people: «2 ч 15 мин» (hours, however many: no business day is
    24 hours long)."""
    whole = whole_minutes(minutes)
    if whole is None:
        return "—"
    return _grouped(duration_text(whole))


def wall_time(minutes: int | None) -> str:
    """Wall-clock minutes for people: «2 ч 15 мин», from a day on «3 дн 4 ч»."""
    return "—" if minutes is None else days_text(minutes)


def _grouped(text: str) -> str:
    """Thousands of hours with a no-break space: «2 919 ч»."""
    head, _, tail = text.partition(" ")
    digits = head.lstrip("-")
    if digits.isdigit() and len(digits) > 3:
        head = head[: len(head) - len(digits)] + f"{int(digits):,}".replace(",", "\u00a0")
    return f"{head} {tail}" if tail else head


def span_minutes(span: timedelta | None) -> int | None:
    return None if span is None else int(span.total_seconds() // 60)


def percent_text(value: Decimal | None) -> str:
    return "—" if value is None else f"{html_cell(value)} %"


def points_text(value: Decimal) -> str:
    """A change in percentage points with its sign: «+3,2 п.п.», «−1 п.п.», «0 п.п.»."""
    sign = "+" if value > 0 else "−" if value < 0 else ""
    return f"{sign}{html_cell(abs(value))} п.п."


def rate_text(rate: Rate) -> str:
    """A met share in one line of plain text: «85,7 % (6 из 7), цель 95 %, ▼ 3,2 п.п.»."""
    parts = [f"{percent_text(rate.percent)} ({rate.met} из {rate.settled})"]
    if rate.goal is not None:
        parts.append(f"цель {html_cell(rate.goal)} %" + (" — ниже цели" if rate.below_goal else ""))
    if rate.change is not None:
        parts.append(f"{trend_arrow(rate.change)} {points_text(rate.change)}")
    return ", ".join(parts)


def trend_arrow(change: Decimal) -> str:
    return "▲" if change > 0 else "▼" if change < 0 else "="


# --- tables --------------------------------------------------------------------------------------

MET_HEADERS = (
    "Обращений",
    "Обращений за прошлый период",
    "Реакция: в срок",
    "Реакция: нарушено",
    "Реакция: % в срок",
    "Реакция: цель, %",
    "Реакция: % в срок за прошлый период",
    "Реакция: изменение, п.п.",
    "Решение: в срок",
    "Решение: нарушено",
    "Решение: % в срок",
    "Решение: цель, %",
    "Решение: % в срок за прошлый период",
    "Решение: изменение, п.п.",
)
MET_SHOWN = ("Обращений", "Реакция в срок", "Решение в срок")


def _rate_cells(rate: Rate) -> tuple[Cell, ...]:
    return (
        rate.met,
        rate.settled - rate.met,
        rate.percent,
        rate.goal,
        rate.before,
        rate.change,
    )


def _met_row(row: MetRow) -> tuple[Cell, ...]:
    return (
        *row.label,
        row.requests,
        row.before_requests,
        *_rate_cells(row.reaction),
        *_rate_cells(row.resolution),
    )


def _met_shown(row: MetRow) -> tuple[Shown, ...]:
    return (*row.label, row.requests, row.reaction, row.resolution)


def met_table(slug: str, title: str, labels: tuple[str, ...], rows: Sequence[MetRow]) -> Table:
    return Table(
        slug,
        title,
        (*labels, *MET_HEADERS),
        tuple(_met_row(row) for row in rows),
        note="% в срок — выполненные в срок из завершённых (в срок или с нарушением); "
        "«из» — сколько завершено. Цель — из политики; ▲▼ — изменение к прошлому периоду "
        "той же длины, в процентных пунктах.",
        numeric_from=len(labels),
        shown_headers=(*labels, *MET_SHOWN),
        shown=tuple(_met_shown(row) for row in rows),
    )


def when(moment: datetime | None, figures: Figures) -> str:
    if moment is None:
        return ""
    return moment.astimezone(figures.period.zone).strftime("%d.%m.%Y %H:%M")


def summary_table(figures: Figures) -> Table:
    total = figures.total_row()
    now = figures.now_by_agent()
    rows: list[tuple[Cell, ...]] = [("Обращений", total.requests)]
    if total.before_requests is not None:
        rows.append(("Обращений за прошлый период", total.before_requests))
    for name, rate in (("Реакция", total.reaction), ("Решение", total.resolution)):
        rows += [
            (f"{name}: % в срок", rate.percent),
            (f"{name}: в срок", rate.met),
            (f"{name}: нарушено", rate.settled - rate.met),
            (f"{name}: цель, %", rate.goal),
        ]
        if rate.compared:
            rows += [
                (f"{name}: % в срок за прошлый период", rate.before),
                (f"{name}: изменение, п.п.", rate.change),
            ]
    rows += [
        ("Просрочено сейчас (открытые)", sum(a.breached for a in now)),
        ("Под угрозой сейчас (открытые)", sum(a.at_risk for a in now)),
    ]
    return Table("summary", "Сводка", ("Показатель", "Значение"), tuple(rows))


def tables(figures: Figures) -> list[Table]:
    """Every table of the report, in the page's order."""
    found = [
        summary_table(figures),
        *now_tables(figures),
        Table(
            "daily",
            "По дням регистрации",
            ("Дата", "Обращений", "Выполнено в срок", "С нарушением", "В работе"),
            tuple(
                (f"{d.day:%d.%m.%Y}", d.requests, d.met, d.breached, d.open)
                for d in figures.daily()
            ),
            note="«В работе»: открытые без нарушения и обращения без тарифа. Дни без "
            "обращений здесь опущены (в CSV они есть).",
            quiet_rows=True,
        ),
        met_table(
            "by_tariff_class", "По тарифу и классу", ("Тариф", "Класс"), figures.tariff_class_rows()
        ),
        met_table("by_agent", "По ответственному", ("Ответственный",), figures.agent_rows()),
        met_table("by_company", "По компании", ("Компания",), figures.company_rows()),
        times_table(figures),
        breaches_table(figures),
    ]
    if has_next_response(figures):
        found.append(next_response_table(figures))
    if figures.hours is not None:
        found.append(hours_table(figures))
    if figures.quotas is not None:
        found.append(
            Table(
                "quotas",
                "Квоты",
                ("Компания", "Квота", "Тариф", "Использовано", "Лимит", "Сверх лимита за период"),
                tuple(
                    (
                        q.name,
                        q.summary.quota.name,
                        q.plan or "",
                        q.summary.used,
                        q.summary.limit,
                        len(q.over_in_period),
                    )
                    for q in figures.quotas
                ),
                note="Использовано — обращения по квоте за её окно до конца периода; "
                "тариф компании — тариф её последнего обращения.",
                numeric_from=3,
            )
        )
    return found


def times_table(figures: Figures) -> Table:
    times = figures.times()
    return Table(
        "times",
        "Время реакции и решения, рабочее время",
        (
            "Тариф",
            "Реакций",
            "Реакция: медиана, мин",
            "Реакция: p90, мин",
            "Решений",
            "Решение: медиана, мин",
            "Решение: p90, мин",
        ),
        tuple(
            (
                t.tariff,
                t.reactions,
                t.reaction_median,
                t.reaction_p90,
                t.resolutions,
                t.resolution_median,
                t.resolution_p90,
            )
            for t in times
        ),
        note="Только завершённые: реакция состоялась, обращение решено. Рабочее время по "
        "календарю тарифа; p90 — наименьшее время, которое не превышают 90 % обращений. "
        "В CSV — рабочие минуты.",
        shown_headers=(
            "Тариф",
            "Реакций",
            "Реакция: медиана",
            "Реакция: p90",
            "Решений",
            "Решение: медиана",
            "Решение: p90",
        ),
        shown=tuple(
            (
                t.tariff,
                t.reactions,
                business_time(t.reaction_median),
                business_time(t.reaction_p90),
                t.resolutions,
                business_time(t.resolution_median),
                business_time(t.resolution_p90),
            )
            for t in times
        ),
    )


def breaches_table(figures: Figures) -> Table:
    rows: list[tuple[Cell, ...]] = []
    shown: list[tuple[Shown, ...]] = []
    urls: list[str] = []
    for breach in figures.breaches():
        request = breach.request
        overdue = int(breach.overdue.total_seconds() // 60)
        row: tuple[Cell, ...] = (
            request.lead_id,
            request.name,
            figures.company(request.company_id),
            figures.user(request.responsible_user_id),
            request.state.tariff,
            breach.clock,
            when(breach.due, figures),
            when(breach.finished_at, figures) or "не выполнено",
            overdue,
            "рабочие" if breach.business else "календарные",
        )
        rows.append(row)
        late = business_time(overdue) if breach.business else wall_time(overdue)
        kind = "рабочего" if breach.business else "календарного"
        shown.append((*row[:8], f"{late} {kind}"))
        urls.append(figures.link(request.lead_id))
    return Table(
        "breaches",
        "Нарушения",
        (
            "Сделка",
            "Обращение",
            "Компания",
            "Ответственный",
            "Тариф",
            "Срок",
            "Срок истёк",
            "Выполнено",
            "Просрочка, мин",
            "Минуты",
        ),
        tuple(rows),
        note="Каждый нарушенный срок — строка; просрочка — рабочее время сверх нормы "
        "(для согласованной даты — календарное от даты). В CSV — минуты.",
        urls=tuple(urls),
        numeric_from=8,
        shown_headers=(
            "Сделка",
            "Обращение",
            "Компания",
            "Ответственный",
            "Тариф",
            "Срок",
            "Срок истёк",
            "Выполнено",
            "Просрочка",
        ),
        shown=tuple(shown),
    )


def now_tables(figures: Figures) -> list[Table]:
    """What waits now: at risk and breached open requests, by agent, then each of them."""
    agents = figures.now_by_agent()
    items = figures.waiting_now()
    moment = when(figures.now, figures)
    summary = Table(
        "now_by_agent",
        f"Сейчас ({moment}): под угрозой и просрочено по ответственным",
        ("Ответственный", "Под угрозой", "Просрочено"),
        tuple((a.agent, a.at_risk, a.breached) for a in agents),
        note="Открытые обращения на момент расчёта отчёта, когда бы они ни были "
        "зарегистрированы: «под угрозой» — израсходовано не меньше доли срока из политики.",
    )
    rows: list[tuple[Cell, ...]] = []
    shown: list[tuple[Shown, ...]] = []
    urls: list[str] = []
    per_agent: dict[str, int] = {}
    left_out = 0
    for item in items:
        agent = figures.user(item.request.responsible_user_id)
        row = _waiting_row(item, agent, figures)
        rows.append(row)
        per_agent[agent] = per_agent.get(agent, 0) + 1
        if per_agent[agent] > NOW_ROWS_SHOWN:
            left_out += 1
            continue
        shown.append(_waiting_shown(item, row))
        urls.append(figures.link(item.request.lead_id))
    listing = Table(
        "now",
        "Сейчас: обращения под угрозой и просроченные",
        (
            "Ответственный",
            "Сделка",
            "Обращение",
            "Компания",
            "Тариф",
            "Статус",
            "Срок",
            "Срок истекает",
            "Осталось, рабочих мин",
            "Просрочка, мин",
            "Минуты",
        ),
        tuple(rows),
        urls=tuple(urls),
        link_column=1,
        numeric_from=8,
        shown_headers=(
            "Ответственный",
            "Обращение",
            "Компания",
            "Тариф",
            "Статус",
            "Срок",
            "Срок истекает",
            "Осталось / просрочка",
        ),
        shown=tuple(shown),
        more=(
            f"На странице — до {NOW_ROWS_SHOWN} обращений каждого ответственного; ещё "
            f"{left_out} — в now.csv."
            if left_out
            else ""
        ),
    )
    return [summary, listing]


def _waiting_row(item: Waiting, agent: str, figures: Figures) -> tuple[Cell, ...]:
    request = item.request
    return (
        agent,
        request.lead_id,
        request.name,
        figures.company(request.company_id),
        request.state.tariff,
        request.state.status.value,
        item.clock,
        when(item.due, figures),
        span_minutes(item.left) if not item.breached else None,
        span_minutes(item.over) if item.breached else None,
        ("рабочие" if item.business else "календарные") if item.breached else "рабочие",
    )


def _waiting_shown(item: Waiting, row: tuple[Cell, ...]) -> tuple[Shown, ...]:
    if item.breached:
        late = span_minutes(item.over)
        text = (
            f"просрочено на {business_time(late)}"
            if item.business
            else f"просрочено на {wall_time(late)}"
        )
    else:
        text = f"осталось {business_time(span_minutes(item.left))}"
    return (row[0], f"{row[2]} (#{row[1]})", row[3], row[4], row[5], row[6], row[7], text)


def next_response_table(figures: Figures) -> Table:
    """Waiting periods for the next answer (spec §4.1) by tariff, responsible and company."""
    found = wait_counts(figures)
    return Table(
        "next_response",
        "Следующий ответ клиенту",
        ("Разрез", "Группа", "Ожиданий", "В срок", "Нарушено", "% в срок", "p90, мин"),
        tuple((c.kind, c.label, c.periods, c.met, c.breached, c.met_percent, c.p90) for c in found),
        note="Ожидание — от первого неотвеченного сообщения клиента после реакции до ответа "
        "сотрудника (или закрытия); в срок и нарушено — по цели тарифа в рабочих часах; "
        "p90 — по завершённым ожиданиям. В CSV — рабочие минуты.",
        numeric_from=2,
        shown_headers=("Разрез", "Группа", "Ожиданий", "В срок", "p90"),
        shown=tuple(
            (
                c.kind,
                c.label,
                c.periods,
                Rate(c.met, c.met + c.breached),
                business_time(c.p90),
            )
            for c in found
        ),
    )


def hours_table(figures: Figures) -> Table:
    rows = []
    shown: list[tuple[Shown, ...]] = []
    for h in figures.hours or ():
        balance = h.balance
        row: tuple[Cell, ...] = (
            h.name,
            h.package.hours.normalize() if h.package else None,
            f"{h.package.paid_on:%d.%m.%Y}" if h.package else (h.problem or ""),
            f"{balance.valid_to:%d.%m.%Y}" if balance else "",
            balance.used_minutes if balance else None,
            balance.remaining_minutes if balance else None,
            h.outside_minutes,
            h.over_minutes,
            h.rate,
            h.over_cost,
        )
        rows.append(row)
        shown.append(
            (
                *row[:4],
                business_time(balance.used_minutes) if balance else None,
                business_time(balance.remaining_minutes) if balance else None,
                business_time(h.outside_minutes),
                business_time(h.over_minutes),
                money(h.rate) if h.rate is not None else None,
                money(h.over_cost) if h.over_cost is not None else None,
            )
        )
    return Table(
        "hours",
        "Часы по компаниям",
        (
            "Компания",
            "Пакет, ч",
            "Оплачен",
            "Действует до",
            "Израсходовано, мин",
            "Остаток, мин",
            "Вне пакета, мин",
            "Сверх пакета, мин",
            "Ставка, ₽/ч",
            "Сверх пакета, ₽",
        ),
        tuple(rows),
        note="Пакет — тот, что указан в карточке компании сейчас; израсходовано и остаток — "
        "на конец периода (или на момент отчёта, если раньше), как их записывает воркер; "
        "«вне пакета» — записи периода вне срока действия пакета; сверх пакета — записи "
        "периода сверх лимита, по ставке дополнительного часа. В CSV — минуты.",
        shown_headers=(
            "Компания",
            "Пакет, ч",
            "Оплачен",
            "Действует до",
            "Израсходовано",
            "Остаток",
            "Вне пакета",
            "Сверх пакета",
            "Ставка, ₽/ч",
            "Сверх пакета, ₽",
        ),
        shown=tuple(shown),
    )


# --- CSV -----------------------------------------------------------------------------------------


# A text cell starting with one of these is a formula to a spreadsheet: names and notes come
# from amoCRM, where anyone with access can type them.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Cell) -> str:
    """A cell's CSV text: numbers as numbers; text that a spreadsheet would take for a
    formula gets a leading apostrophe, so it shows as the text it is."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return str(value)


def write_csv(table: Table, directory: Path) -> Path:
    path = directory / f"{table.slug}.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(table.headers)
        for row in table.rows:
            writer.writerow([csv_cell(cell) for cell in row])
    return path


# --- HTML ----------------------------------------------------------------------------------------


def money(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}".replace(",", "\u00a0")


def html_cell(value: Shown) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, Decimal):
        return csv_cell(value).replace(".", ",")
    return str(value)


def _style() -> Style:
    return Style(
        background="transparent",
        plot_background="transparent",
        foreground="#333a44",
        foreground_strong="#1d232b",
        foreground_subtle="#d9dde3",
        font_family="'DejaVu Sans', 'Segoe UI', Arial, sans-serif",
        label_font_size=13,
        major_label_font_size=13,
        legend_font_size=14,
        value_font_size=12,
        title_font_size=16,
        tooltip_font_size=12,
        colors=(GREEN, RED, GREY, BLUE, AMBER),
        opacity=".95",
        opacity_hover="1",
    )


def _chart_config(**options: object) -> dict[str, object]:
    return {
        "style": _style(),
        "js": [],  # pygal's tooltips load a script from the network: none, the page is offline
        "disable_xml_declaration": True,
        "no_data_text": "Нет данных",
        "legend_at_bottom": True,
        "legend_at_bottom_columns": 3,
        "print_values": False,
        "margin": 12,
        "truncate_label": -1,
        "truncate_legend": -1,
        "width": 900,
        "height": 340,
        **options,
    }


def _svg(chart: pygal.graph.graph.Graph) -> str:
    """The chart's SVG without pygal's script (its tooltips' configuration): the page runs
    no script, and its Content-Security-Policy would refuse one."""
    tree = chart.render_tree()
    for parent in list(tree.iter()):
        for child in list(parent):
            if child.tag == "script" or str(child.tag).endswith("}script"):
                parent.remove(child)
    return ElementTree.tostring(tree, encoding="unicode")


def _bar(met: int, settled: int) -> dict[str, object] | None:
    """A bar of a met share, printed with its «n из N»."""
    if not settled:
        return None
    share = float(Decimal(100 * met) / settled)
    label = f"{share:.0f} % · {met} из {settled}"
    return {"value": share, "formatter": lambda _value: label}


def charts(figures: Figures) -> list[tuple[str, str, str]]:
    """(id, title, inline SVG) of each chart."""
    days = figures.daily()
    most = max((d.requests for d in days), default=0)
    step = max(1, -(-most // 8))
    daily = pygal.StackedBar(
        **_chart_config(
            show_minor_x_labels=False,
            x_labels_major_every=max(1, len(days) // 12),
            height=300,
            **({"y_labels": list(range(0, most + step, step))} if most else {}),
        )
    )
    daily.x_labels = [f"{d.day:%d.%m}" for d in days]
    if any(d.requests for d in days):
        daily.add("Выполнено в срок", [d.met for d in days])
        daily.add("С нарушением", [d.breached for d in days])
        daily.add("В работе", [d.open for d in days])

    def met_chart(rows: Sequence[MetCounts]) -> str:
        chart = pygal.HorizontalBar(
            **_chart_config(
                range=(0, 100),
                include_x_axis=True,
                **({"y_labels": [0, 25, 50, 75, 100]} if rows else {}),
                width=560,
                height=max(240, 90 + 44 * len(rows)),
                legend_at_bottom_columns=2,
                print_values=True,
                print_values_position="top",
                colors=(BLUE, AMBER),
            )
        )
        chart.style = Style(**{**_style().__dict__, "colors": (BLUE, AMBER)})
        chart.x_labels = [" · ".join(r.label) for r in reversed(rows)]
        if rows:
            chart.add(
                "Реакция, % в срок",
                [
                    _bar(r.reaction_met, r.reaction_met + r.reaction_breached)
                    for r in reversed(rows)
                ],
            )
            chart.add(
                "Решение, % в срок",
                [
                    _bar(r.resolution_met, r.resolution_met + r.resolution_breached)
                    for r in reversed(rows)
                ],
            )
        return _svg(chart)

    found = [
        ("daily", "Обращения по дням: в срок и с нарушением", _svg(daily)),
        ("tariff", "% в срок по тарифу и классу", met_chart(figures.by_tariff_class())),
        ("agent", "% в срок по ответственному", met_chart(figures.by_agent())),
    ]
    if figures.hours is not None:
        hours = [h for h in figures.hours if h.balance is not None or h.outside_minutes]
        chart = pygal.HorizontalStackedBar(
            **_chart_config(height=max(220, 70 + 46 * len(hours)), colors=(GREEN, RED, GREY))
        )
        chart.style = Style(**{**_style().__dict__, "colors": (GREEN, RED, GREY)})
        chart.x_labels = [h.name for h in reversed(hours)]
        if hours:
            chart.add(
                "В пакете, ч",
                [
                    round((h.balance.used_minutes - h.over_minutes) / 60, 2) if h.balance else 0
                    for h in reversed(hours)
                ],
            )
            chart.add("Сверх пакета, ч", [round(h.over_minutes / 60, 2) for h in reversed(hours)])
            chart.add("Вне пакета, ч", [round(h.outside_minutes / 60, 2) for h in reversed(hours)])
        found.append(("hours", "Часы по компаниям", _svg(chart)))
    return found


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("worker.sla_report", "templates"),
        autoescape=jinja2.select_autoescape(("html", "j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = html_cell
    env.filters["money"] = money
    env.filters["percent"] = percent_text
    env.filters["points"] = points_text
    env.filters["arrow"] = trend_arrow
    env.tests["rate"] = lambda value: isinstance(value, Rate)
    return env


@dataclass(frozen=True)
class Card:
    label: str
    value: str
    tone: str  # good, warn, bad or ""
    rate: Rate | None = None
    note: str = ""


def cards(figures: Figures) -> list[Card]:
    total = figures.total_row()
    now = figures.now_by_agent()
    late, risky = sum(a.breached for a in now), sum(a.at_risk for a in now)
    before = ""
    if total.before_requests is not None:
        change = total.requests - total.before_requests
        arrow = trend_arrow(Decimal(change))
        before = f"{arrow} {change:+d} к прошлому периоду ({total.before_requests})"
    return [
        Card("Обращений", str(total.requests), "", note=before),
        Card(
            "Реакция в срок",
            percent_text(total.reaction.percent),
            _tone(total.reaction),
            total.reaction,
        ),
        Card(
            "Решение в срок",
            percent_text(total.resolution.percent),
            _tone(total.resolution),
            total.resolution,
        ),
        Card(
            "Просрочено сейчас",
            str(late),
            "bad" if late else "",
            note=f"и {risky} под угрозой — открытые на момент расчёта",
        ),
    ]


def render_html(figures: Figures, found: Sequence[Table], *, title: str) -> str:
    """The report's page."""
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            figures=figures,
            period=figures.period.text(),
            previous=figures.previous.text() if figures.previous else "",
            generated=when(figures.now, figures),
            zone=figures.period.zone.key,
            cards=cards(figures),
            charts=charts(figures),
            tables=[t for t in found if t.slug != "summary"],
        )
    )


def _tone(rate: Rate) -> str:
    value = rate.percent
    if value is None:
        return ""
    if rate.goal is not None:
        return "bad" if rate.below_goal else "good"
    return "good" if value >= 90 else "warn" if value >= 75 else "bad"
