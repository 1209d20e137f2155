"""The auditors' API: the near-shore ledger, its summary and chain check; policies and
baselines (admins write, auditors read); the outbox's dead and pending rows (admins)."""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE

from market import ledger
from market.api.pagination import page_of
from market.clock import business_year
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
    SummaryQuerySchema,
    SummarySchema,
)
from market.services import policies
from workers import outbox

blp = Blueprint(
    "ledger", __name__, description="The near-shore purchase ledger and the subsidy policy"
)

READERS = (Role.AUDITOR, Role.ADMIN)


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
# With a schema, so the text/csv content is merged into the 200 response's document (without
# one, flask-smorest keeps only the description and the export goes undocumented).
@blp.alt_response(
    200,
    description="JSON pages, or with format=csv: UTF-8 CSV with a BOM",
    schema={"type": "string"},
    content_type="text/csv",
)
def ledger_entries(args: dict[str, Any]) -> Any:
    """Ledger entries in ledger order, filtered; JSON pages or a streamed CSV export.

    Auditors see entries of plants in their jurisdiction, buyers their organization's, suppliers
    their own purchases' verdicts without subsidy figures. ``format=csv`` streams UTF-8 CSV with a
    BOM for Excel, with the same columns as the JSON.
    """
    filters = _filters(args)
    if args["export_format"] == "csv":
        name = f"ledger-{args['year']}.csv" if args.get("year") else "ledger.csv"
        return Response(
            stream_with_context(ledger.ledger_csv(filters)),
            mimetype="text/csv",
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )
    return ledger.ledger_page(filters, args["page"], args["per_page"]).as_dict()


@blp.route("/ledger/summary")
@allow(Role.BUYER, *READERS)
@blp.arguments(SummaryQuerySchema, location="query", unknown=RAISE)
@blp.response(200, SummarySchema)
def ledger_summary(args: dict[str, Any]) -> dict[str, Any]:
    """Per OEM for a year: T, B, I*, S*, held, cap (buyers: their own organization only).

    The year defaults to the current business year (Asia/Shanghai).
    """
    user = actor()
    oem = user.organization_id if user.role is Role.BUYER else args.get("oem")
    return ledger.ledger_summary(
        args.get("year") or business_year(),
        oem=oem,
        plant_city_prefixes=_jurisdiction(user),
    )


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
