"""The auditors' API: the near-shore ledger, its summary and chain check; policies and
baselines (admins write, auditors read); the outbox's dead and pending rows (admins)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from market import ledger
from market.api.pagination import page_of
from market.clock import business_year
from market.errors import ValidationFailed
from market.ledger.reports import TooManyRows, ledger_xlsx, summary_csv, summary_xlsx
from market.ledger.sheets import XLSX_MIMETYPE
from market.models import Role, User
from market.permissions import (
    actor,
    allow,
    auditor_city_prefixes,
    require_active_organization,
)
from market.schemas.ledger import (
    BaselineCreateSchema,
    BaselineListSchema,
    BaselineQuerySchema,
    BaselineSchema,
    ChainReportSchema,
    LedgerEntrySchema,
    LedgerQuerySchema,
    OemPositionSchema,
    OutboxEventSchema,
    OutboxQuerySchema,
    PolicyCreateSchema,
    PolicyListSchema,
    PolicySchema,
    SummaryExportQuerySchema,
    SummaryQuerySchema,
    SummarySchema,
)
from market.services import policies
from workers import outbox

blp = Blueprint(
    "ledger", __name__, description="The near-shore purchase ledger and the subsidy policy"
)

F = TypeVar("F", bound=Callable[..., Any])
READERS = (Role.AUDITOR, Role.ADMIN)
# The 200 response's description (one for all its content types).
LEDGER_FORMATS = "JSON pages; with format=csv: UTF-8 CSV with a BOM; with format=xlsx: a workbook"
SUMMARY_FORMATS = (
    "The summary; with format=csv: UTF-8 CSV with a BOM, one row per OEM; with format=xlsx: "
    "a workbook, one row per OEM and a 合计 (totals) row"
)
TOO_MANY_ROWS = "More than 50,000 entries for one XLSX export: narrow the query or use format=csv."


def _exports(description: str) -> Callable[[F], F]:
    """Document the CSV and XLSX downloads beside the JSON 200 answer.

    With a schema each, so their content types are merged into the 200 response's document
    (without one, flask-smorest keeps only the description and the export goes undocumented).
    """

    def decorate(view: F) -> F:
        view = blp.alt_response(
            200,
            description=description,
            schema={"type": "string", "format": "binary"},
            content_type=XLSX_MIMETYPE,
        )(view)
        return blp.alt_response(
            200, description=description, schema={"type": "string"}, content_type="text/csv"
        )(view)

    return decorate


def _jurisdiction(user: User) -> tuple[str, ...] | None:
    """An auditor's city-code prefixes; None (no restriction) for everyone else who gets here
    (admins; buyers, whose rows the use case scopes to their own organization)."""
    return auditor_city_prefixes(user) if user.role is Role.AUDITOR else None


def _filters(args: dict[str, Any]) -> ledger.LedgerFilter:
    """The query's filters, within the caller's jurisdiction (auditors: their authority's
    cities, by the plant the purchase was delivered to; admins: everything)."""
    return ledger.LedgerFilter(
        plant_city_prefixes=_jurisdiction(actor()),
        year=args.get("year"),
        oem=args.get("oem"),
        supplier=args.get("supplier"),
        city=args.get("city"),
        near_shore=args.get("near_shore"),
        kind=args.get("kind"),
        date_from=args.get("date_from"),
        date_to=args.get("date_to"),
    )


@blp.route("/ledger")
@allow(*READERS)
@blp.arguments(LedgerQuerySchema, location="query", unknown=RAISE)
@blp.response(200, page_of(LedgerEntrySchema))
@_exports(LEDGER_FORMATS)
def ledger_entries(args: dict[str, Any]) -> Any:
    """Ledger entries in ledger order, filtered; JSON pages or a CSV or XLSX export.

    Auditors see the entries of plants in their jurisdiction, admins every entry. The exports
    hold every matching entry (page and per_page do not apply), with the same columns as the
    JSON: CSV streamed, UTF-8 with a BOM for Excel; XLSX one sheet (台账明细) with Chinese
    headers and amounts as numbers, refused (422) past 50,000 entries (a workbook is built
    whole): narrow the query or take the CSV, which streams any size.
    """
    filters = _filters(args)
    name = f"ledger-{args['year']}" if args.get("year") else "ledger"
    if args["export_format"] == "csv":
        return _download(stream_with_context(ledger.ledger_csv(filters)), f"{name}.csv")
    if args["export_format"] == "xlsx":
        try:
            return _download(ledger_xlsx(filters), f"{name}.xlsx")
        except TooManyRows as exc:
            raise ValidationFailed(fields={"format": [TOO_MANY_ROWS]}) from exc
    return ledger.ledger_page(filters, args["page"], args["per_page"]).as_dict()


def _download(body: Any, filename: str) -> Response:
    """An export as an attachment: CSV text (UTF-8) or XLSX bytes, by the file's name."""
    csv = filename.endswith(".csv")
    content_type = "text/csv; charset=utf-8" if csv else XLSX_MIMETYPE
    return Response(
        body,
        mimetype="text/csv" if csv else XLSX_MIMETYPE,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


@blp.route("/ledger/summary")
@allow(Role.BUYER, *READERS)
@blp.arguments(SummaryExportQuerySchema, location="query", unknown=RAISE)
@blp.response(200, SummarySchema)
@_exports(SUMMARY_FORMATS)
def ledger_summary(args: dict[str, Any]) -> Any:
    """Per OEM for a year: T, B, I*, S*, held, cap (buyers: their own organization only).

    The year defaults to the current business year (Asia/Shanghai). With format=csv or
    format=xlsx the same rows come as a file: one row per OEM, money as exact decimals (CSV)
    or numbers with two decimals (XLSX, which adds a 合计 row of the totals).
    """
    user = actor()
    oem = user.organization_id if user.role is Role.BUYER else args.get("oem")
    summary = ledger.ledger_summary(
        args.get("year") or business_year(),
        oem=oem,
        plant_city_prefixes=_jurisdiction(user),
    )
    name = f"ledger-summary-{summary['year']}"
    if args["export_format"] == "csv":
        return _download(summary_csv(summary), f"{name}.csv")
    if args["export_format"] == "xlsx":
        return _download(summary_xlsx(summary), f"{name}.xlsx")
    return summary


@blp.route("/ledger/position")
@allow(Role.BUYER)
@blp.arguments(SummaryQuerySchema, location="query", unknown=RAISE)
@blp.response(200, OemPositionSchema)
def ledger_position(args: dict[str, Any]) -> dict[str, Any]:
    """Your organization's position in a year: T, B, I*, S*, held, cap left.

    The year defaults to the current business year (Asia/Shanghai); `oem` is ignored.
    """
    org = require_active_organization(actor())
    return ledger.oem_position(org.id, args.get("year") or business_year())


@blp.route("/ledger/verify")
@allow(*READERS)
@blp.response(200, ChainReportSchema)
def ledger_verify() -> ledger.ChainReport:
    """Walk the hash chain: ok, number of entries, head hash, first broken sequence.

    Recomputes every entry's hash from its canonical JSON and its predecessor. For evidence that
    does not rely on this server, use signed checkpoints and the offline verifier.
    """
    return ledger.verify_chain()


@blp.route("/policies")
class Policies(MethodView):
    @allow(*READERS)
    @blp.response(200, PolicyListSchema)
    def get(self) -> dict[str, Any]:
        """Every subsidy policy version, oldest first.

        A version sets the province prefix, the maximum distance, the rate and the annual cap per
        OEM, and applies from 1 January of its first year.
        """
        return {"items": policies.policy_list()}

    @allow(Role.ADMIN)
    @blp.arguments(PolicyCreateSchema)
    @blp.response(201, PolicySchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Add the next policy version (never retroactive).

        The version must start on 1 January of a year that has not begun, so no recorded figure
        changes.
        """
        return policies.policy_add(data, by=actor())


@blp.route("/baselines")
class Baselines(MethodView):
    @allow(*READERS)
    @blp.arguments(BaselineQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, BaselineListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Declared baselines (an OEM's near-shore total of a year before the platform).

        Baselines stand in for years the platform did not cover; without one (or a covered previous
        year), an OEM's subsidy for the year is held.
        """
        return {"items": policies.baseline_list(oem_org_id=args.get("oem"), year=args.get("year"))}

    @allow(Role.ADMIN)
    @blp.arguments(BaselineCreateSchema)
    @blp.response(201, BaselineSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Declare an OEM's near-shore total of a past year (correctable until used).

        The ledger appends an adjustment for the year after, so every figure stays reproducible. A
        baseline used by a decided claim cannot be changed.
        """
        return policies.baseline_declare(data, by=actor())


@blp.route("/admin/outbox")
@allow(Role.ADMIN)
@blp.arguments(OutboxQuerySchema, location="query", unknown=RAISE)
@blp.response(200, page_of(OutboxEventSchema))
def admin_outbox(args: dict[str, Any]) -> dict[str, Any]:
    """Outbox rows that are dead or still pending (by default), oldest first.

    For operators: asynchronous work (ledger appends, search updates, notifications, webhooks) that
    has not completed, with attempts and the last error.
    """
    page = outbox.outbox_page(args["status"], args.get("topic"), args["page"], args["per_page"])
    page.items = [outbox.describe(event) for event in page.items]
    return page.as_dict()
