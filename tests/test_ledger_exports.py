"""The auditors' spreadsheets over HTTP: ``/ledger?format=xlsx`` (the CSV's rows, typed) and
``/ledger/summary?format=csv|xlsx`` (the JSON summary's rows), opened with openpyxl / csv and
compared with the JSON to the cent."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import load_workbook

from market import ledger
from market.ledger import sheets
from market.ledger.chain import MONEY_FIELDS
from market.ledger.reports import SUMMARY_COLUMNS
from market.models import OrgKind, PurchaseStatus, Role
from tests import factories
from tests.factories import GUANGZHOU, SHANTOU, SHENZHEN

D = Decimal
XLSX = sheets.XLSX_MIMETYPE


@pytest.fixture(autouse=True)
def _policy_version_1(db_session):
    ledger.ensure_default_policy()


@pytest.fixture
def auditor(db_session):
    return factories.auth(factories.make_user(role=Role.AUDITOR))


@pytest.fixture
def recorded(db_session) -> dict[str, Any]:
    oem_a = factories.make_org(OrgKind.OEM, legal_name="=广州整车")  # formula injection attempt
    oem_b = factories.make_org(OrgKind.OEM, legal_name="@东莞整车")
    plant_a = factories.make_site(oem_a, at=GUANGZHOU)
    plant_b = factories.make_site(oem_b, at=GUANGZHOU)
    near = factories.make_org(city_code="440300", legal_name="深圳零部件有限公司")
    near_site = factories.make_site(near, at=SHENZHEN)
    far = factories.make_org(city_code="440500")
    far_site = factories.make_site(far, at=SHANTOU)
    rows = [
        (oem_a, plant_a, near, near_site, "300.00", "2025-06-01"),
        (oem_a, plant_a, near, near_site, "1234567.89", "2026-01-05"),
        (oem_a, plant_a, near, near_site, "250.55", "2026-02-05"),
        (oem_a, plant_a, far, far_site, "999.99", "2026-03-05"),
        (oem_b, plant_b, near, near_site, "0.01", "2026-04-05"),
        (oem_b, plant_b, near, near_site, "12345.65", "2026-05-05"),
    ]
    purchases = [
        factories.make_purchase(
            o, p, s, site, amount=a, purchased_on=date.fromisoformat(on), invoice_number=f"+{i}"
        )
        for i, (o, p, s, site, a, on) in enumerate(rows)
    ]
    for purchase in purchases:
        ledger.sync_purchase(purchase.id)
    purchases[2].status = PurchaseStatus.CANCELLED
    ledger.sync_purchase(purchases[2].id)
    return {"oem_a": oem_a, "oem_b": oem_b}


def _download(client, headers, path: str, content_type: str, filename: str) -> bytes:
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Disposition"] == f'attachment; filename="{filename}"'
    return response.get_data()


def _assert_cell_is(cell: Any, expected: Any, name: str) -> None:
    """An XLSX cell holds exactly what the JSON says."""
    if expected is None:
        assert cell.value is None, name
    elif name in MONEY_FIELDS or name in ("distance_km",) or name in SUMMARY_MONEY:
        assert cell.data_type == "n", name
        assert D(str(cell.value)) == D(expected), name  # to the cent (distances: the metre)
        assert cell.number_format == ("0.000" if name == "distance_km" else "#,##0.00")
    elif name == "purchased_on":
        assert cell.value.date() == date.fromisoformat(expected)
    elif name == "recorded_at":
        assert cell.value.replace("+00:00", "Z")[:26] == expected.replace("+00:00", "Z")[:26]
    else:
        assert cell.value == expected, name
        if isinstance(expected, str):
            assert cell.data_type == "s", name  # text is text, never a formula
            assert cell.quotePrefix == expected.startswith(sheets.FORMULA_START), name


SUMMARY_MONEY = {name for name, (_, kind) in SUMMARY_COLUMNS.items() if kind == sheets.MONEY}


def test_the_ledger_as_xlsx_is_the_json_typed(client, auditor, recorded):
    raw = _download(client, auditor, "/api/v1/ledger?format=xlsx&year=2026", XLSX,
                    "ledger-2026.xlsx")  # fmt: skip
    workbook = load_workbook(io.BytesIO(raw))
    assert workbook.sheetnames == ["台账明细"]
    sheet = workbook["台账明细"]
    assert sheet.freeze_panes == "A2"
    assert [cell.value for cell in sheet[1]] == [sheets.LEDGER_HEADERS[c] for c in ledger.COLUMNS]
    assert all(cell.font.b for cell in sheet[1])
    assert sheet.column_dimensions["AG"].width >= 20  # the entry hash is not squeezed
    items = client.get("/api/v1/ledger?year=2026&per_page=100", headers=auditor).get_json()
    rows = list(sheet.iter_rows(min_row=2))
    assert len(rows) == len(items["items"]) == 6
    for row, item in zip(rows, items["items"], strict=True):
        for cell, name in zip(row, ledger.COLUMNS, strict=True):
            _assert_cell_is(cell, item[name], name)
    assert rows[0][ledger.COLUMNS.index("oem_name")].value == "=广州整车"
    assert D(str(rows[0][ledger.COLUMNS.index("amount")].value)) == D("1234567.89")
    # The same rows as the CSV export, in the same order.
    text = client.get("/api/v1/ledger?format=csv&year=2026", headers=auditor).get_data()
    csv_rows = list(csv.DictReader(io.StringIO(text.decode("utf-8-sig"))))
    assert [int(r["seq"]) for r in csv_rows] == [row[0].value for row in rows]


def test_the_summary_as_csv_and_xlsx_is_the_json(client, auditor, recorded):
    summary = client.get("/api/v1/ledger/summary?year=2026", headers=auditor).get_json()
    assert len(summary["items"]) == 2
    raw = _download(client, auditor, "/api/v1/ledger/summary?year=2026&format=csv",
                    "text/csv; charset=utf-8", "ledger-summary-2026.csv")  # fmt: skip
    assert raw.startswith(b"\xef\xbb\xbf")
    reader = csv.reader(io.StringIO(raw.decode("utf-8-sig")))
    header, *rows = list(reader)
    assert header == list(SUMMARY_COLUMNS)
    for row, item in zip(rows, summary["items"], strict=True):
        values = dict(zip(header, row, strict=True))
        assert values["year"] == "2026"
        for name in SUMMARY_MONEY:
            assert D(values[name]) == D(item[name]), name
        assert values["held"] == str(item["held"]).lower()
    names = {row[header.index("oem_name")] for row in rows}
    assert names == {"'=广州整车", "'@东莞整车"}  # defused, as in the ledger CSV

    raw = _download(client, auditor, "/api/v1/ledger/summary?year=2026&format=xlsx", XLSX,
                    "ledger-summary-2026.xlsx")  # fmt: skip
    sheet = load_workbook(io.BytesIO(raw))["汇总"]
    assert sheet.freeze_panes == "A2"
    assert [cell.value for cell in sheet[1]] == [header for header, _ in SUMMARY_COLUMNS.values()]
    *oem_rows, total_row = list(sheet.iter_rows(min_row=2))
    assert len(oem_rows) == 2
    for row, item in zip(oem_rows, summary["items"], strict=True):
        for cell, name in zip(row, SUMMARY_COLUMNS, strict=True):
            _assert_cell_is(cell, 2026 if name == "year" else item[name], name)
    totals = dict(zip(SUMMARY_COLUMNS, total_row, strict=True))
    assert totals["oem_name"].value == "合计"
    for name, value in summary["totals"].items():
        _assert_cell_is(totals[name], value, name)


def test_a_buyer_gets_its_own_summary_row_and_no_ledger(client, recorded):
    buyer = factories.auth(factories.make_user(recorded["oem_b"]))
    raw = client.get("/api/v1/ledger/summary?year=2026&format=csv", headers=buyer).get_data()
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [int(r["oem_org_id"]) for r in rows] == [recorded["oem_b"].id]
    raw = client.get("/api/v1/ledger/summary?year=2026&format=xlsx", headers=buyer).get_data()
    sheet = load_workbook(io.BytesIO(raw))["汇总"]
    assert [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)] == [
        recorded["oem_b"].id,
        None,  # the 合计 row
    ]
    assert client.get("/api/v1/ledger?format=xlsx", headers=buyer).status_code == 403


@pytest.mark.parametrize("path", ["/api/v1/ledger?format=pdf", "/api/v1/ledger/summary?format=xls"])
def test_an_unknown_format_is_422(client, auditor, path):
    response = client.get(path, headers=auditor)
    assert response.status_code == 422
    assert "format" in response.get_json()["error"]["fields"]


def test_a_ledger_beyond_one_worksheet_is_refused(client, auditor, recorded, monkeypatch):
    monkeypatch.setattr(sheets, "MAX_DATA_ROWS", 5)
    response = client.get("/api/v1/ledger?format=xlsx", headers=auditor)
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"]["format"] == [
        "More than 50,000 entries for one XLSX export: narrow the query or use format=csv."
    ]
    chinese = client.get(
        "/api/v1/ledger?format=xlsx", headers={**auditor, "Accept-Language": "zh-CN"}
    )
    assert chinese.get_json()["error"]["fields"]["format"][0].startswith("单次 XLSX 导出最多")
    assert client.get("/api/v1/ledger?format=xlsx&year=2026", headers=auditor).status_code == 422
    assert client.get("/api/v1/ledger?format=xlsx&year=2025", headers=auditor).status_code == 200


def test_the_exports_are_documented(client):
    document = client.get("/openapi.json").get_json()
    for path in ("/api/v1/ledger", "/api/v1/ledger/summary"):
        operation = document["paths"][path]["get"]
        assert set(operation["responses"]["200"]["content"]) == {
            "application/json",
            "text/csv",
            XLSX,
        }
        (format_parameter,) = [p for p in operation["parameters"] if p["name"] == "format"]
        assert format_parameter["schema"]["enum"] == ["json", "csv", "xlsx"]
        assert "xlsx" in format_parameter["description"]
