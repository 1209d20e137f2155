"""Spreadsheets for auditors: the ledger and its summary as XLSX (openpyxl, write-only).

Why a module of its own: the ledger export, the summary export and the claim package
(:mod:`market.ledger.package`) must write cells the same way, and a spreadsheet cell has more
ways to go wrong than a CSV field:

- amounts are NUMBERS (``#,##0.00``) written from the Decimal's exact text, never via a float
  the program rounded; distances ``0.000``; dates as dates; UTC timestamps as ISO 8601 text
  (Excel has no time zones);
- every text cell is typed as a string, so a value such as ``=HYPERLINK(…)`` is never a formula;
  text that starts like a formula (``= + - @``, tab, CR: the same set as the CSV export) also
  gets Excel's quote prefix, so editing the cell cannot turn it into one either. Unlike the CSV
  (which has no types and so prefixes an apostrophe), the value stays exactly what the JSON says;
- the header row is frozen and columns have widths that fit their content.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from market.ledger.chain import MONEY_FIELDS

if TYPE_CHECKING:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet
# openpyxl is imported by the first workbook, not with the app: most processes never write one
# and the import costs about 0.2 s (a worker's or a command's start-up).

XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Entries one XLSX export answers. Excel holds 1,048,575 data rows, but openpyxl writes some
# thousands of rows a second (33 cells each) and the workbook is answered whole, not streamed:
# past this a request would outlast the server's timeout. The CSV streams any size.
MAX_DATA_ROWS = 50_000

MONEY_FORMAT = "#,##0.00"
DISTANCE_FORMAT = "0.000"
DATE_FORMAT = "yyyy-mm-dd"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# How a column's values are written: its number format and its width (characters).
MONEY, DISTANCE, DAY, INTEGER, BOOLEAN, TEXT, LONG_TEXT, HASH, TIMESTAMP = (
    "money",
    "distance",
    "date",
    "integer",
    "boolean",
    "text",
    "long_text",
    "hash",
    "timestamp",
)
WIDTHS = {
    MONEY: 18,
    DISTANCE: 12,
    DAY: 12,
    INTEGER: 10,
    BOOLEAN: 10,
    TEXT: 16,
    LONG_TEXT: 30,
    HASH: 24,
    TIMESTAMP: 32,
}
FORMATS = {MONEY: MONEY_FORMAT, DISTANCE: DISTANCE_FORMAT, DAY: DATE_FORMAT}

# The ledger's columns (market.ledger.reports.COLUMNS) with their Chinese headers.
LEDGER_HEADERS = {
    "seq": "序号",
    "format": "格式",
    "cause": "记账原因",
    "kind": "类型",
    "purchase_id": "采购编号",
    "invoice_number": "发票号码",
    "purchased_on": "采购日期",
    "year": "年度",
    "oem_org_id": "整车企业编号",
    "oem_uscc": "整车企业统一社会信用代码",
    "oem_name": "整车企业名称",
    "plant_city_code": "工厂城市代码",
    "supplier_org_id": "供应商编号",
    "supplier_uscc": "供应商统一社会信用代码",
    "supplier_name": "供应商名称",
    "supplier_city_code": "供应商城市代码",
    "amount": "金额（元）",
    "near_shore": "是否近岸",
    "reason_code": "判定代码",
    "distance_km": "距离（公里）",
    "policy_version": "政策版本",
    "baseline": "基数（元）",
    "baseline_source": "基数来源",
    "held": "是否暂缓",
    "near_shore_total_before": "记账前近岸总额（元）",
    "near_shore_total": "记账后近岸总额（元）",
    "increment_total": "累计增量（元）",
    "subsidy_total": "累计补贴（元）",
    "increment": "增量变动（元）",
    "subsidy": "补贴变动（元）",
    "recorded_at": "记账时间（UTC）",
    "prev_hash": "前一条目哈希",
    "entry_hash": "条目哈希",
}
_LEDGER_KINDS = {
    "seq": INTEGER,
    "format": INTEGER,
    "cause": LONG_TEXT,
    "purchase_id": INTEGER,
    "invoice_number": TEXT,
    "purchased_on": DAY,
    "year": INTEGER,
    "oem_org_id": INTEGER,
    "oem_uscc": TEXT,
    "oem_name": LONG_TEXT,
    "supplier_org_id": INTEGER,
    "supplier_uscc": TEXT,
    "supplier_name": LONG_TEXT,
    "near_shore": BOOLEAN,
    "distance_km": DISTANCE,
    "policy_version": INTEGER,
    "held": BOOLEAN,
    "recorded_at": TIMESTAMP,
    "prev_hash": HASH,
    "entry_hash": HASH,
}


def ledger_kind(name: str) -> str:
    """How the ledger column ``name`` is written."""
    return MONEY if name in MONEY_FIELDS else _LEDGER_KINDS.get(name, TEXT)


def cell_value(value: Any, kind: str) -> Any:
    """The value as the cell holds it (None stays an empty cell)."""
    if value is None:
        return None
    if isinstance(value, Enum):
        value = value.value
    if kind in (MONEY, DISTANCE):
        return Decimal(value)
    if kind == TIMESTAMP and isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.isoformat(timespec="microseconds")
    if kind == DAY and isinstance(value, date):
        return value
    if isinstance(value, bool | int | Decimal) and kind in (INTEGER, BOOLEAN):
        return value
    return str(value)


class Sheet:
    """A write-only worksheet with a bold, frozen header row and typed columns."""

    def __init__(
        self,
        workbook: Workbook,
        title: str,
        columns: Sequence[tuple[str, str]],
        widths: Mapping[int, int] | None = None,
    ):
        """``columns``: (header, kind) pairs, in order; ``widths`` overrides the width of
        columns by number (from 1)."""
        from openpyxl.cell import WriteOnlyCell  # on first use (see the imports)
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter

        self._new_cell = WriteOnlyCell
        self.worksheet: WriteOnlyWorksheet = workbook.create_sheet(title)
        self.kinds = [kind for _, kind in columns]
        self.worksheet.freeze_panes = "A2"
        for number, (header, kind) in enumerate(columns, start=1):
            # A CJK character takes about two columns' width.
            width = (widths or {}).get(number) or max(WIDTHS[kind], 2 * len(header) + 2)
            self.worksheet.column_dimensions[get_column_letter(number)].width = width
        header_cells = [self._cell(header, TEXT) for header, _ in columns]
        bold = Font(bold=True)
        for cell in header_cells:
            cell.font = bold
        self.worksheet.append(header_cells)

    def _cell(self, value: Any, kind: str) -> WriteOnlyCell:
        value = cell_value(value, kind)
        cell = self._new_cell(self.worksheet, value=value)
        if isinstance(value, str):
            cell.data_type = "s"  # never a formula, whatever the text
            if value.startswith(FORMULA_START):
                cell.quotePrefix = True
        elif kind in FORMATS and value is not None:
            cell.number_format = FORMATS[kind]
        return cell

    def append(self, values: Iterable[Any], kinds: Sequence[str] | None = None) -> None:
        """One row; ``kinds`` overrides the columns' kinds for this row (label/value sheets)."""
        kinds = kinds or self.kinds
        self.worksheet.append(
            [self._cell(value, kind) for value, kind in zip(values, kinds, strict=True)]
        )


def new_workbook() -> Workbook:
    from openpyxl import Workbook  # on first use (see the imports)

    return Workbook(write_only=True)


def workbook_bytes(workbook: Workbook) -> bytes:
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
