"""The report as files: one CSV per table and ``report.html``, a page that needs nothing else.

The page is a Jinja2 template (``templates/report.html.j2``); the charts are pygal's
SVG, inlined into it without pygal's scripts, so the page loads nothing from anywhere,
opens offline and prints (A4) as it shows. CSV files are UTF-8 with a byte-order mark,
so spreadsheet programs read the Cyrillic right; numbers use a dot.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import jinja2
import pygal
from pygal.style import Style

from sla.words import duration_text
from worker.sla_report.figures import CompanyHours, Figures, MetCounts
from worker.sla_report.next_response import has_next_response, wait_counts

Cell = str | int | Decimal | None

GREEN, RED, GREY, BLUE, AMBER = "#2e9d5b", "#d64545", "#b8bfc7", "#3a6fd8", "#e0a526"


@dataclass(frozen=True)
class Table:
    slug: str  # the CSV's file name without .csv
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""
    urls: tuple[str, ...] = ()  # a link per row for the first column (HTML only)
    numeric_from: int = 1  # columns from this one on are numbers (aligned right)
    quiet_rows: bool = False  # the page leaves out rows whose second column is 0

    @property
    def page_rows(self) -> tuple[tuple[Cell, ...], ...]:
        if not self.quiet_rows:
            return self.rows
        return tuple(row for row in self.rows if row[1] != 0)


@dataclass(frozen=True)
class Statement:
    """A company's statement of hours: what a contractor sends the customer."""

    hours: CompanyHours
    table: Table
    totals: tuple[tuple[str, str], ...]


# --- tables --------------------------------------------------------------------------------------

MET_HEADERS = (
    "Обращений",
    "Реакция: в срок",
    "Реакция: нарушено",
    "Реакция: % в срок",
    "Решение: в срок",
    "Решение: нарушено",
    "Решение: % в срок",
)


def _met_row(counts: MetCounts) -> tuple[Cell, ...]:
    return (
        *counts.label,
        counts.requests,
        counts.reaction_met,
        counts.reaction_breached,
        counts.reaction_percent,
        counts.resolution_met,
        counts.resolution_breached,
        counts.resolution_percent,
    )


def when(moment: datetime | None, figures: Figures) -> str:
    if moment is None:
        return ""
    return moment.astimezone(figures.period.zone).strftime("%d.%m.%Y %H:%M")


def summary_table(figures: Figures) -> Table:
    total = figures.total
    rows: list[tuple[Cell, ...]] = [
        ("Обращений", total.requests),
        ("Реакция: % в срок", total.reaction_percent),
        ("Решение: % в срок", total.resolution_percent),
        ("Открытых просрочек сейчас", figures.open_breaches),
        ("Реакция: в срок", total.reaction_met),
        ("Реакция: нарушено", total.reaction_breached),
        ("Решение: в срок", total.resolution_met),
        ("Решение: нарушено", total.resolution_breached),
    ]
    return Table("summary", "Сводка", ("Показатель", "Значение"), tuple(rows))


def tables(figures: Figures) -> list[Table]:
    """Every table of the report, in the page's order."""
    found = [
        summary_table(figures),
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
        Table(
            "by_tariff_class",
            "По тарифу и классу",
            ("Тариф", "Класс", *MET_HEADERS),
            tuple(_met_row(c) for c in figures.by_tariff_class()),
            numeric_from=2,
        ),
        Table(
            "by_agent",
            "По ответственному",
            ("Ответственный", *MET_HEADERS),
            tuple(_met_row(c) for c in figures.by_agent()),
        ),
        Table(
            "by_company",
            "По компании",
            ("Компания", *MET_HEADERS),
            tuple(_met_row(c) for c in figures.by_company()),
        ),
        Table(
            "times",
            "Время реакции и решения, рабочих минут",
            (
                "Тариф",
                "Реакций",
                "Реакция: медиана",
                "Реакция: p90",
                "Решений",
                "Решение: медиана",
                "Решение: p90",
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
                for t in figures.times()
            ),
            note="Только завершённые: реакция состоялась, обращение решено. "
            "p90 — наименьшее время, которое не превышают 90 % обращений.",
        ),
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


def breaches_table(figures: Figures) -> Table:
    rows: list[tuple[Cell, ...]] = []
    urls: list[str] = []
    for breach in figures.breaches():
        request = breach.request
        rows.append(
            (
                request.lead_id,
                request.name,
                figures.company(request.company_id),
                figures.user(request.responsible_user_id),
                request.state.tariff,
                breach.clock,
                when(breach.due, figures),
                when(breach.finished_at, figures) or "не выполнено",
                int(breach.overdue.total_seconds() // 60),
                "рабочие" if breach.business else "календарные",
            )
        )
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
        "(для согласованной даты — календарное от даты).",
        urls=tuple(urls),
        numeric_from=8,
    )


def next_response_table(figures: Figures) -> Table:
    """Waiting periods for the next answer (spec §4.1) by tariff, responsible and company."""
    return Table(
        "next_response",
        "Следующий ответ клиенту",
        ("Разрез", "Группа", "Ожиданий", "В срок", "Нарушено", "% в срок", "p90, мин"),
        tuple(
            (c.kind, c.label, c.periods, c.met, c.breached, c.met_percent, c.p90)
            for c in wait_counts(figures)
        ),
        note="Ожидание — от первого неотвеченного сообщения клиента после реакции до ответа "
        "сотрудника (или закрытия); в срок и нарушено — по цели тарифа в рабочих часах; "
        "p90 — рабочих минут, по завершённым ожиданиям.",
        numeric_from=2,
    )


def hours_table(figures: Figures) -> Table:
    rows = []
    for h in figures.hours or ():
        balance = h.balance
        rows.append(
            (
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
        "на момент отчёта; «вне пакета» — записи периода вне срока действия пакета; сверх "
        "пакета — по ставке дополнительного часа.",
    )


def statements(figures: Figures, company_id: int | None = None) -> list[Statement]:
    found = []
    for hours in figures.hours or ():
        if company_id is not None and hours.company_id != company_id:
            continue
        if company_id is None and not hours.entries:
            continue
        found.append(statement(figures, hours))
    return found


def statement(figures: Figures, hours: CompanyHours) -> Statement:
    balance = hours.balance
    counted = {entry.note_id for entry in balance.counted} if balance else set()
    names = {r.lead_id: r.name for r in figures.requests}
    rows: list[tuple[Cell, ...]] = []
    urls = []
    for entry in hours.entries:
        rows.append(
            (
                when(entry.at, figures),
                entry.lead_id,
                names.get(entry.lead_id, figures.lead_names.get(entry.lead_id, "")),
                figures.user(entry.author_id),
                entry.what,
                (Decimal(entry.seconds) / 60).quantize(Decimal("0.1")),
                entry.minutes,
                "в пакете" if entry.note_id in counted else "вне пакета",
            )
        )
        urls.append(figures.link(entry.lead_id))
    table = Table(
        f"statement-{hours.company_id}",
        f"Выписка по часам: {hours.name}",
        (
            "Дата",
            "Сделка",
            "Обращение",
            "Исполнитель",
            "Что сделано",
            "Записано, мин",
            "Учтено, мин",
            "Учёт",
        ),
        tuple(rows),
        note="Каждая запись округляется вверх до 5 минут (оферта, п. 5.2).",
        numeric_from=5,
    )
    totals = [("Записей", str(len(rows))), ("Учтено за период", duration_text(hours.minutes))]
    if hours.package is not None and balance is not None:
        totals += [
            (
                "Пакет",
                f"{duration_text(hours.package.minutes)}, оплачен "
                f"{hours.package.paid_on:%d.%m.%Y}, действует до {balance.valid_to:%d.%m.%Y}",
            ),
            ("Израсходовано по пакету", duration_text(balance.used_minutes)),
            ("Остаток", duration_text(max(balance.remaining_minutes, 0))),
        ]
    if hours.outside_minutes:
        totals.append(("Вне пакета", duration_text(hours.outside_minutes)))
    if hours.over_minutes:
        cost = f" — {money(hours.over_cost)} ₽ по {money(hours.rate)} ₽/ч" if hours.rate else ""
        totals.append(("Сверх пакета", duration_text(hours.over_minutes) + cost))
    return Statement(hours, table, tuple(totals))


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


def html_cell(value: Cell) -> str:
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

    def met_chart(rows: Sequence[MetCounts], label: str) -> str:
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
                value_formatter=lambda v: "" if v is None else f"{v:.0f} %",
                colors=(BLUE, AMBER),
            )
        )
        chart.style = Style(**{**_style().__dict__, "colors": (BLUE, AMBER)})
        chart.x_labels = [label_of(r) for r in reversed(rows)]
        if rows:
            chart.add("Реакция, % в срок", [_float(r.reaction_percent) for r in reversed(rows)])
            chart.add("Решение, % в срок", [_float(r.resolution_percent) for r in reversed(rows)])
        return _svg(chart)

    def label_of(row: MetCounts) -> str:
        return " · ".join(row.label)

    found = [
        ("daily", "Обращения по дням: в срок и с нарушением", _svg(daily)),
        ("tariff", "% в срок по тарифу и классу", met_chart(figures.by_tariff_class(), "")),
        ("agent", "% в срок по ответственному", met_chart(figures.by_agent(), "")),
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


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("worker.sla_report", "templates"),
        autoescape=jinja2.select_autoescape(("html", "j2")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = html_cell
    env.filters["money"] = money
    return env


def percent_text(value: Decimal | None) -> str:
    return "—" if value is None else f"{html_cell(value)} %"


def render_html(
    figures: Figures, found: Sequence[Table], *, title: str, only: Sequence[Statement] = ()
) -> str:
    """The page: the whole report, or (``only``) the statements alone."""
    total = figures.total
    cards = [
        ("Обращений", str(total.requests), ""),
        ("Реакция в срок", percent_text(total.reaction_percent), _tone(total.reaction_percent)),
        ("Решение в срок", percent_text(total.resolution_percent), _tone(total.resolution_percent)),
        ("Открытых просрочек", str(figures.open_breaches), "bad" if figures.open_breaches else ""),
    ]
    by_slug = {table.slug: table for table in found}
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            figures=figures,
            period=f"{figures.period.first:%d.%m.%Y} — {figures.period.last:%d.%m.%Y}",
            generated=when(figures.now, figures),
            zone=figures.period.zone.key,
            cards=cards if not only else [],
            charts=charts(figures) if not only else [],
            tables=[t for t in found if t.slug not in {"summary"}] if not only else [],
            by_slug=by_slug,
            statements=only or statements(figures),
            statement_only=bool(only),
        )
    )


def _tone(value: Decimal | None) -> str:
    if value is None:
        return ""
    return "good" if value >= 90 else "warn" if value >= 75 else "bad"
