"""The auditors' API: ledger pages and CSV, the summary, the chain check, policies, baselines,
the admins' outbox view."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from market import ledger
from market.clock import business_today
from market.extensions import db
from market.models import (
    DeclaredBaseline,
    OrgKind,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    PurchaseStatus,
    Role,
    SubsidyPolicy,
)
from tests import factories
from tests.factories import GUANGZHOU, SHANTOU, SHENZHEN
from tests.insider import as_insider

D = Decimal


@pytest.fixture(autouse=True)
def _policy_version_1(db_session):
    ledger.ensure_default_policy()  # a committed_db test before may have emptied the table


@pytest.fixture
def auditor(db_session):
    return factories.auth(factories.make_user(role=Role.AUDITOR))


@pytest.fixture
def admin(db_session):
    return factories.auth(factories.make_user(role=Role.ADMIN))


@pytest.fixture
def recorded(db_session):
    """Two OEMs' purchases over 2025 and 2026, recorded, one cancelled and reversed."""
    oem_a = factories.make_org(OrgKind.OEM, legal_name="=广州整车")  # CSV injection attempt
    oem_b = factories.make_org(OrgKind.OEM)
    plant_a = factories.make_site(oem_a, at=GUANGZHOU)
    plant_b = factories.make_site(oem_b, at=GUANGZHOU)
    near = factories.make_org(city_code="440300", legal_name="深圳零部件有限公司")
    near_site = factories.make_site(near, at=SHENZHEN)
    far = factories.make_org(city_code="440500")
    far_site = factories.make_site(far, at=SHANTOU)
    rows = [
        (oem_a, plant_a, near, near_site, "300.00", "2025-06-01"),
        (oem_a, plant_a, near, near_site, "200.00", "2026-01-05"),
        (oem_a, plant_a, near, near_site, "250.55", "2026-02-05"),
        (oem_a, plant_a, far, far_site, "999.99", "2026-03-05"),
        (oem_b, plant_b, near, near_site, "1000.00", "2026-04-05"),
        (oem_b, plant_b, near, near_site, "12345.65", "2026-05-05"),
    ]
    purchases = [
        factories.make_purchase(o, p, s, site, amount=a, purchased_on=date.fromisoformat(on))
        for o, p, s, site, a, on in rows
    ]
    for purchase in purchases:
        ledger.sync_purchase(purchase.id)
    purchases[2].status = PurchaseStatus.CANCELLED
    db.session.flush()
    ledger.sync_purchase(purchases[2].id)
    db.session.flush()
    return {"oem_a": oem_a, "oem_b": oem_b, "near": near, "far": far, "purchases": purchases}


def test_ledger_json_pages_in_ledger_order(client, auditor, recorded):
    body = client.get("/api/v1/ledger?per_page=3", headers=auditor).get_json()
    assert body["meta"] == {"page": 1, "per_page": 3, "total": 7, "pages": 3}
    assert [e["seq"] for e in body["items"]] == [1, 2, 3]
    first = body["items"][0]
    assert first["amount"] == "300.00" and first["subsidy"] == "3.00"
    assert first["oem_name"] == "=广州整车" and len(first["entry_hash"]) == 64
    assert first["distance_km"].count(".") == 1 and first["policy_version"] == 1
    last = client.get("/api/v1/ledger?page=3&per_page=3", headers=auditor).get_json()
    assert [e["kind"] for e in last["items"]] == ["reversal"]


@pytest.mark.parametrize(
    ("query", "expected_seqs"),
    [
        ("year=2025", [1]),
        ("year=2026&oem={oem_b}", [5, 6]),
        ("supplier={far}", [4]),
        ("city=440500", [4]),
        ("near_shore=false", [4]),
        ("near_shore=true&year=2026&oem={oem_a}", [2, 3, 7]),
        ("kind=reversal", [7]),
        ("date_from=2026-02-01&date_to=2026-04-05", [3, 4, 5, 7]),
        ("year=2024", []),
    ],
)
def test_ledger_filters(client, auditor, recorded, query, expected_seqs):
    ids = {name: obj.id for name, obj in recorded.items() if name != "purchases"}
    response = client.get(f"/api/v1/ledger?{query.format(**ids)}", headers=auditor)
    assert response.status_code == 200, response.get_json()
    assert [e["seq"] for e in response.get_json()["items"]] == expected_seqs


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("year=abc", "year"),
        ("date_from=2026-03-01&date_to=2026-02-01", "date_to"),
        ("format=xml", "format"),
        ("city=4403", "city"),
        ("near_shore=maybe", "near_shore"),
        ("kind=deleted", "kind"),
        ("oem=-1", "oem"),
        ("per_page=1000", "per_page"),
        ("page=0", "page"),
        ("sort=amount", "sort"),
        ("date_from=2026-02-30", "date_from"),
    ],
)
def test_bad_ledger_queries_are_422_with_the_field(client, auditor, query, field):
    response = client.get(f"/api/v1/ledger?{query}", headers=auditor)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def _csv(client, headers, query=""):
    response = client.get(f"/api/v1/ledger?format=csv&{query}", headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))


def test_csv_is_utf8_with_bom_in_a_stable_column_order(client, auditor, recorded):
    response = client.get("/api/v1/ledger?format=csv&year=2026", headers=auditor)
    text_body = response.get_data().decode("utf-8-sig")
    header = text_body.splitlines()[0]
    assert header.split(",") == list(ledger.COLUMNS)
    assert 'filename="ledger-2026.csv"' in response.headers["Content-Disposition"]
    rows = _csv(client, auditor)
    assert [int(r["seq"]) for r in rows] == list(range(1, 8))
    assert rows[0]["oem_name"] == "'=广州整车"  # a formula is defused for spreadsheets
    assert rows[0]["supplier_name"] == "深圳零部件有限公司"
    assert rows[6]["kind"] == "reversal" and rows[6]["amount"] == "-250.55"
    assert all(len(r["entry_hash"]) == 64 and r["policy_version"] == "1" for r in rows)
    assert rows[1]["prev_hash"] == rows[0]["entry_hash"]


def test_csv_totals_equal_the_summary(client, auditor, recorded):
    rows = _csv(client, auditor, "year=2026")
    summary = client.get("/api/v1/ledger/summary?year=2026", headers=auditor).get_json()
    by_oem = {item["oem_org_id"]: item for item in summary["items"]}
    assert set(by_oem) == {recorded["oem_a"].id, recorded["oem_b"].id}
    for oem_id, item in by_oem.items():
        mine = [r for r in rows if int(r["oem_org_id"]) == oem_id]
        near = [r for r in mine if r["near_shore"] == "true"]
        assert D(item["near_shore_total"]) == sum((D(r["amount"]) for r in near), D(0))
        assert D(item["total_amount"]) == sum((D(r["amount"]) for r in mine), D(0))
        assert D(item["increment"]) == sum((D(r["increment"]) for r in mine), D(0))
        assert D(item["subsidy"]) == sum((D(r["subsidy"]) for r in mine), D(0))
        assert item["entries"] == len(mine)
    totals = summary["totals"]
    assert D(totals["subsidy"]) == sum((D(r["subsidy"]) for r in rows), D(0))
    assert D(totals["near_shore_total"]) == sum(
        (D(r["amount"]) for r in rows if r["near_shore"] == "true"), D(0)
    )


def test_summary_figures(client, auditor, recorded):
    summary = client.get("/api/v1/ledger/summary?year=2026", headers=auditor).get_json()
    a, b = sorted(summary["items"], key=lambda item: item["oem_org_id"])
    # OEM A 2026: 200 (baseline 300: nothing new), 250.55 (150.55 new), far 999.99, reversal.
    assert (a["near_shore_total"], a["baseline"], a["baseline_source"]) == (
        "200.00",
        "300.00",
        "platform",
    )
    assert (a["increment"], a["subsidy"], a["entries"]) == ("0.00", "0.00", 4)
    # OEM B: no 2025 purchasing, so all of it is new: 1000 + 12345.65 → 10.00 + 123.46.
    assert (b["increment"], b["subsidy"], b["annual_cap"], b["cap_reached"]) == (
        "13345.65",
        "133.46",
        "2000000.00",
        False,
    )
    assert summary["policy_version"] == 1 and summary["year"] == 2026
    only_b = client.get(
        f"/api/v1/ledger/summary?year=2026&oem={recorded['oem_b'].id}", headers=auditor
    ).get_json()
    assert [item["oem_org_id"] for item in only_b["items"]] == [recorded["oem_b"].id]
    # The year defaults to the current business year (Asia/Shanghai).
    default = client.get("/api/v1/ledger/summary", headers=auditor)
    assert default.status_code == 200 and default.get_json()["year"] == business_today().year


def test_verify_reports_a_row_changed_in_the_database(client, auditor, recorded):
    report = client.get("/api/v1/ledger/verify", headers=auditor).get_json()
    assert report["ok"] is True and report["entries"] == 7 and report["broken_at"] is None
    head = report["head_hash"]
    # Someone with the table owner's rights goes around the application (and its trigger).
    postgres = db.session.get_bind().dialect.name == "postgresql"
    amount = "1" if postgres else "100"  # SQLite keeps fen
    with as_insider(db.session.connection()):
        db.session.execute(text(f"UPDATE ledger_entries SET amount = {amount} WHERE seq = 5"))
    report = client.get("/api/v1/ledger/verify", headers=auditor).get_json()
    assert report == {
        "ok": False,
        "entries": 7,
        "head_hash": head,
        "broken_at": 5,
        "reason": "entry_hash does not match the entry's content",
    }


def test_verify_reports_a_missing_entry(client, auditor, recorded):
    with as_insider(db.session.connection()):
        db.session.execute(text("DELETE FROM ledger_entries WHERE seq = 3"))
    report = client.get("/api/v1/ledger/verify", headers=auditor).get_json()
    assert (report["ok"], report["broken_at"], report["entries"]) == (False, 3, 6)


def test_an_empty_ledger_verifies(client, auditor):
    assert client.get("/api/v1/ledger/verify", headers=auditor).get_json() == {
        "ok": True,
        "entries": 0,
        "head_hash": None,
        "broken_at": None,
        "reason": None,
    }


# --- policies ----------------------------------------------------------------------------------

# Exact decimals are JSON strings, as in the marketplace (a JSON number is a binary float).
POLICY = {
    "effective_from": "2031-01-01",
    "province_prefix": "44",
    "max_distance_km": "150",
    "rate": "0.015",
    "annual_cap": "3000000.00",
    "note": "v2",
}

# Money that is no amount, whatever the field (RELIABILITY: bad money inputs).
BAD_MONEY = [
    pytest.param(-1, "JSON string", id="json-negative"),
    pytest.param(1000.5, "JSON string", id="json-number"),
    pytest.param(10**6, "JSON string", id="json-integer"),
    pytest.param(True, "JSON string", id="json-true"),
    pytest.param("-1", "Must be", id="negative"),
    pytest.param("1e309", "at most", id="1e309-as-text"),
    pytest.param("NaN", "NaN", id="nan"),
    pytest.param("Infinity", "NaN", id="infinity"),
    pytest.param("-Infinity", "NaN", id="minus-infinity"),
    pytest.param("1.001", "2 decimal places", id="three-decimals"),
    pytest.param("1E2", "plain digits", id="exponent"),
    pytest.param(" 100", "plain digits", id="spaces"),
    pytest.param("1,000.00", "decimal amount", id="separator"),
    pytest.param("", "decimal amount", id="empty"),
    pytest.param("abc", "decimal amount", id="text"),
    pytest.param(None, "null", id="null"),
]


def count_rows(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def assert_refused(response, field: str, message: str = "") -> None:
    """422 naming ``field`` with a message (containing ``message``)."""
    assert response.status_code == 422, response.get_json()
    messages = response.get_json()["error"]["fields"][field]
    assert messages and all(isinstance(m, str) and m for m in messages), messages
    assert message in " ".join(messages), messages


def test_admin_adds_a_policy_version_auditor_reads_it(client, admin, auditor):
    response = client.post("/api/v1/policies", json=POLICY, headers=admin)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert (created["version"], created["rate"], created["annual_cap"]) == (
        2,
        "0.015000",
        "3000000.00",
    )
    assert created["max_distance_km"] == "150.000" and created["effective_until"] is None
    listed = client.get("/api/v1/policies", headers=auditor).get_json()["items"]
    assert [p["version"] for p in listed] == [1, 2]
    assert listed[0]["province_prefix"] == "44" and listed[0]["annual_cap"] == "2000000.00"
    assert client.post("/api/v1/policies", json=POLICY, headers=auditor).status_code == 403


def test_a_policy_as_read_can_be_posted_back(client, admin, auditor):
    """Answers and requests use the same decimal strings."""
    first = client.get("/api/v1/policies", headers=auditor).get_json()["items"][0]
    body = {name: first[name] for name in ("province_prefix", "max_distance_km", "rate")}
    body |= {"annual_cap": first["annual_cap"], "effective_from": "2031-01-01"}
    response = client.post("/api/v1/policies", json=body, headers=admin)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert [created[k] for k in body if k != "effective_from"] == [
        first[k] for k in body if k != "effective_from"
    ]


@pytest.mark.parametrize(("value", "message"), BAD_MONEY)
def test_bad_annual_caps_are_422_and_write_nothing(client, admin, value, message):
    before = count_rows(SubsidyPolicy)
    response = client.post("/api/v1/policies", json=POLICY | {"annual_cap": value}, headers=admin)
    assert_refused(response, "annual_cap", message)
    assert count_rows(SubsidyPolicy) == before


@pytest.mark.parametrize("literal", ["1e309", "-1e309", "NaN", "Infinity", "12345.67"])
def test_json_number_literals_are_422_and_write_nothing(client, admin, literal):
    """Numbers a JSON parser turns into floats (inf, nan, or a cent that may be lost)."""
    before = count_rows(SubsidyPolicy)
    raw = json.dumps(POLICY).replace('"3000000.00"', literal)
    response = client.post(
        "/api/v1/policies", data=raw, content_type="application/json", headers=admin
    )
    assert_refused(response, "annual_cap", "JSON string")
    assert count_rows(SubsidyPolicy) == before


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"annual_cap": "0"}, "annual_cap", "greater than 0"),  # a cap that grants nothing
        ({"annual_cap": "1000000000000.01"}, "annual_cap", "at most"),
        ({"rate": 0.01}, "rate", "JSON string"),  # a JSON number, even a "round" one
        ({"rate": 1}, "rate", "JSON string"),
        ({"rate": "0"}, "rate", "greater than 0"),
        ({"rate": "-0.01"}, "rate", "greater than 0"),
        ({"rate": "1.5"}, "rate", "at most 1"),
        ({"rate": "0.0000001"}, "rate", "6 decimal places"),
        ({"rate": "NaN"}, "rate", "NaN"),
        ({"rate": "1e-2"}, "rate", "plain digits"),
        ({"rate": "1%"}, "rate", "decimal rate"),
        ({"max_distance_km": "0"}, "max_distance_km", "greater than 0"),
        ({"max_distance_km": 150}, "max_distance_km", "JSON string"),
        ({"max_distance_km": "150.0001"}, "max_distance_km", "3 decimal places"),
        ({"max_distance_km": "Infinity"}, "max_distance_km", "NaN"),
        ({"province_prefix": "4"}, "province_prefix", ""),
        ({"province_prefix": "44ab"}, "province_prefix", ""),
        ({"effective_from": "2031-02-30"}, "effective_from", ""),
        ({"effective_until": "2030-12-31"}, "effective_until", ""),
        ({"version": 7}, "version", ""),  # not settable
        ({"note": "x" * 501}, "note", ""),
    ],
)
def test_bad_policies_are_422_and_write_nothing(client, admin, change, field, message):
    before = count_rows(SubsidyPolicy)
    response = client.post("/api/v1/policies", json=POLICY | change, headers=admin)
    assert_refused(response, field, message)
    assert count_rows(SubsidyPolicy) == before


def test_the_largest_rate_and_cap_are_accepted(client, admin):
    body = POLICY | {"rate": "1", "annual_cap": "1000000000000", "max_distance_km": "2000.000"}
    response = client.post("/api/v1/policies", json=body, headers=admin)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert (created["rate"], created["annual_cap"], created["max_distance_km"]) == (
        "1.000000",
        "1000000000000.00",
        "2000.000",
    )


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"effective_from": "2026-05-05"}, "effective_from", "1 January"),
        ({"effective_from": f"{business_today().year}-01-01"}, "effective_from", "retroactively"),
        ({"effective_from": "2020-01-01"}, "effective_from", "retroactively"),
        (
            {"effective_from": "2099-01-01", "effective_until": "2099-06-30"},
            "effective_until",
            "31 December",
        ),
    ],
)
def test_policies_govern_whole_future_years(client, admin, recorded, changes, field, message):
    before = client.get("/api/v1/policies", headers=admin).get_json()["items"]
    response = client.post("/api/v1/policies", json=POLICY | changes, headers=admin)
    assert response.status_code == 422
    assert message in response.get_json()["error"]["fields"][field][0]
    assert client.get("/api/v1/policies", headers=admin).get_json()["items"] == before
    ok = client.post(
        "/api/v1/policies",
        json=POLICY
        | {"effective_from": f"{business_today().year + 1}-01-01", "effective_until": None},
        headers=admin,
    )
    assert ok.status_code == 201, ok.get_json()


# --- baselines ---------------------------------------------------------------------------------


def test_declare_a_baseline_then_the_ledger_uses_it(client, admin, auditor):
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=GUANGZHOU)
    supplier = factories.make_org(city_code="440300")
    site = factories.make_site(supplier, at=SHENZHEN)
    body = {"oem_org_id": oem.id, "year": 2025, "amount": "5000.5", "note": "2025 audit report"}
    response = client.post("/api/v1/baselines", json=body, headers=admin)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["amount"] == "5000.50"
    corrected = client.post("/api/v1/baselines", json=body | {"amount": "6000"}, headers=admin)
    assert corrected.status_code == 201 and corrected.get_json()["id"] == response.get_json()["id"]
    listed = client.get(f"/api/v1/baselines?oem={oem.id}", headers=auditor).get_json()["items"]
    assert [(b["year"], b["amount"]) for b in listed] == [(2025, "6000.00")]

    purchase = factories.make_purchase(
        oem, plant, supplier, site, amount="7000.00", purchased_on=date(2026, 1, 2)
    )
    ledger.sync_purchase(purchase.id)
    db.session.flush()
    summary = client.get("/api/v1/ledger/summary?year=2026", headers=auditor).get_json()
    item = summary["items"][0]
    assert (item["baseline"], item["baseline_source"], item["increment"]) == (
        "6000.00",
        "declared",
        "1000.00",
    )
    # Used by the ledger, it may still be corrected (v2): the ledger appends an adjustment.
    late = client.post("/api/v1/baselines", json=body | {"amount": "6500"}, headers=admin)
    assert late.status_code == 201, late.get_json()
    ledger.settle_year(oem.id, 2026)  # what the rebase outbox row asks the worker to do
    db.session.flush()
    item = client.get("/api/v1/ledger/summary?year=2026", headers=auditor).get_json()["items"][0]
    assert (item["baseline"], item["increment"], item["subsidy"]) == ("6500.00", "500.00", "5.00")
    assert client.post("/api/v1/baselines", json=body, headers=auditor).status_code == 403


def test_a_zero_baseline_is_a_real_total(client, admin, auditor):
    """An OEM that bought nothing near-shore in a year declares 0, and the ledger uses it."""
    oem = factories.make_org(OrgKind.OEM)
    body = {"oem_org_id": oem.id, "year": 2024, "amount": "0"}
    response = client.post("/api/v1/baselines", json=body, headers=admin)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["amount"] == "0.00"
    largest = body | {"year": 2023, "amount": "10000000000000.00"}
    assert client.post("/api/v1/baselines", json=largest, headers=admin).status_code == 201


@pytest.mark.parametrize(("value", "message"), BAD_MONEY)
def test_bad_baseline_amounts_are_422_and_write_nothing(client, admin, value, message):
    body = {"oem_org_id": factories.make_org(OrgKind.OEM).id, "year": 2024, "amount": value}
    response = client.post("/api/v1/baselines", json=body, headers=admin)
    assert_refused(response, "amount", message)
    assert count_rows(DeclaredBaseline) == 0


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"oem_org_id": 10**9}, "oem_org_id", ""),
        ({"oem_org_id": "1"}, "oem_org_id", ""),
        ({"year": datetime.now(UTC).year}, "year", ""),
        ({"year": 1800}, "year", ""),
        ({"amount": "-5"}, "amount", "at least 0"),  # zero is a real total; below it is not
        ({"amount": "-0"}, "amount", "plain digits"),
        ({"amount": 5000}, "amount", "JSON string"),  # a JSON number
        ({"amount": "0.001"}, "amount", "2 decimal places"),
        ({"amount": "10000000000000.01"}, "amount", "at most"),
    ],
)
def test_bad_baselines_are_422_and_write_nothing(client, admin, change, field, message):
    body = {"oem_org_id": 1, "year": 2024, "amount": "10"}
    if "oem_org_id" not in change:
        body["oem_org_id"] = factories.make_org(OrgKind.OEM).id
    response = client.post("/api/v1/baselines", json=body | change, headers=admin)
    assert_refused(response, field, message)
    assert count_rows(DeclaredBaseline) == 0


def test_a_supplier_is_no_oem_for_a_baseline(client, admin):
    supplier = factories.make_org()
    body = {"oem_org_id": supplier.id, "year": 2024, "amount": "10"}
    response = client.post("/api/v1/baselines", json=body, headers=admin)
    assert_refused(response, "oem_org_id")
    assert count_rows(DeclaredBaseline) == 0


# --- the outbox (admins) -----------------------------------------------------------------------


def test_admin_sees_dead_and_pending_outbox_rows(client, admin, auditor):
    now = datetime.now(UTC)
    rows = [
        OutboxEvent(topic=OutboxTopic.LEDGER_RECORD, aggregate_id=1, status=OutboxStatus.DONE),
        OutboxEvent(
            topic=OutboxTopic.LEDGER_RECORD,
            aggregate_id=2,
            status=OutboxStatus.DEAD,
            attempts=8,
            last_error="LookupError: purchase 2 does not exist\n[SQL: SELECT secret]",
        ),
        OutboxEvent(topic=OutboxTopic.SEARCH_SYNC, aggregate_id=3, created_at=now),
    ]
    db.session.add_all(rows)
    db.session.flush()
    body = client.get("/api/v1/admin/outbox", headers=admin).get_json()
    assert [(r["aggregate_id"], r["status"]) for r in body["items"]] == [
        (2, "dead"),
        (3, "pending"),
    ]
    assert body["items"][0]["last_error"] == "LookupError: purchase 2 does not exist"
    dead = client.get("/api/v1/admin/outbox?status=dead", headers=admin).get_json()
    assert [r["aggregate_id"] for r in dead["items"]] == [2]
    topic = client.get("/api/v1/admin/outbox?topic=search.sync", headers=admin).get_json()
    assert [r["aggregate_id"] for r in topic["items"]] == [3]
    assert client.get("/api/v1/admin/outbox?status=lost", headers=admin).status_code == 422
    assert client.get("/api/v1/admin/outbox", headers=auditor).status_code == 403


# --- the whole path: a purchase over the API, recorded by the (inline) worker -----------------


def test_a_purchase_and_its_cancellation_reach_the_ledger(client, auditor):
    oem = factories.make_org(OrgKind.OEM)
    plant = factories.make_site(oem, at=GUANGZHOU)
    supplier = factories.make_org(city_code="440300")
    site = factories.make_site(supplier, at=SHENZHEN)
    buyer = factories.auth(factories.make_user(oem))
    db.session.commit()
    body = {
        "supplier_org_id": supplier.id,
        "supplier_site_id": site.id,
        "plant_id": plant.id,
        "category": "chassis.braking.foundation",
        "amount": "12345.67",
        "purchased_on": business_today().isoformat(),
        "invoice_number": "44031234-00000099",
    }
    created = client.post("/api/v1/purchases", json=body, headers=buyer)
    assert created.status_code == 201, created.get_json()
    purchase_id = created.get_json()["id"]
    assert client.get("/api/v1/ledger", headers=auditor).get_json()["items"] == []
    supplier_user = factories.auth(factories.make_user(supplier))
    db.session.commit()
    confirmed = client.post(f"/api/v1/purchases/{purchase_id}/confirm", headers=supplier_user)
    assert confirmed.status_code == 200, confirmed.get_json()
    entries = client.get("/api/v1/ledger", headers=auditor).get_json()["items"]
    assert [(e["purchase_id"], e["kind"], e["increment"]) for e in entries] == [
        (purchase_id, "record", "12345.67")
    ]
    assert ledger.ledger_status(purchase_id)["status"] == "recorded"
    cancelled = client.post(
        f"/api/v1/purchases/{purchase_id}/cancel", json={"reason": "duplicate"}, headers=buyer
    )
    assert cancelled.status_code == 200, cancelled.get_json()
    entries = client.get("/api/v1/ledger", headers=auditor).get_json()["items"]
    assert [(e["kind"], e["amount"], e["subsidy"]) for e in entries] == [
        ("record", "12345.67", "123.46"),
        ("reversal", "-12345.67", "-123.46"),
    ]
    assert client.get("/api/v1/ledger/verify", headers=auditor).get_json()["ok"] is True
