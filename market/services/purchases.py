"""Purchases: awarded here, or made off-platform and confirmed by the other party.

Either party may record an off-platform purchase; it stays ``pending_confirmation`` until the
other party confirms it (only then does the ledger count it) or disputes it with a reason. An
award of a quote is confirmed by construction (the supplier quoted it). A purchase freezes, when
it is created, every fact its verdict depends on (the supplier site's city code and coordinates,
the plant's, the category, the amount): moving or deactivating a site later changes nothing.

An invoice number is unique per (OEM, supplier). The same supplier invoice confirmed by two OEMs
is accepted for both, but both wait for an auditor (invoice review ``pending``,
``DUPLICATE_INVOICE``) and neither counts until released; the check runs when a purchase is
confirmed, so a one-sided record can neither probe for another OEM's invoices nor hold another
OEM's purchase.

Every change the ledger must follow commits an outbox row (``ledger.record`` to count,
``ledger.reverse`` to uncount) in the same transaction; the worker syncs the purchase's count
with its row, so each effect is appended exactly once.

Who sees a purchase: the buying organization's users, the supplier's users, auditors and admins.
Suppliers see the verdict of their purchases, never the OEM's baseline, totals or subsidy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Integer,
    Row,
    Select,
    String,
    and_,
    bindparam,
    exists,
    false,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, selectinload

from market import ledger
from market.clock import utcnow
from market.errors import Conflict, Forbidden, NotFound, ValidationFailed
from market.extensions import db
from market.http import check_id
from market.ledger import SubsidyPreview
from market.models import (
    Capability,
    Confirmation,
    EntryKind,
    IdempotencyRecord,
    InvoiceReview,
    LedgerEntry,
    Organization,
    OrgKind,
    OrgStatus,
    OutboxEvent,
    OutboxStatus,
    OutboxTopic,
    Purchase,
    PurchaseParty,
    PurchaseSource,
    PurchaseStatus,
    Role,
    Site,
    SiteKind,
    User,
)
from market.permissions import auditor_city_prefixes, jurisdiction_condition, require_active_org
from market.schemas.marketplace import PurchaseRecordedSchema
from market.services import idempotency
from market.services.events import EventKind, event_payload
from market.services.pagination import Page, order_by, paginate
from market.services.suppliers import CHIPS
from market.services.unit_of_work import commit, emit, emitted, rollback

RECORD_ENDPOINT = "POST /api/v1/purchases"
PURCHASE_ID_SEQUENCE = "purchases_id_seq"
_SORT_COLUMNS: Mapping[str, Any] = {
    "id": Purchase.id,
    "purchased_on": Purchase.purchased_on,
    "amount": Purchase.amount,
}


@dataclass(frozen=True)
class PurchaseView:
    """A purchase and what its response shows beside it (the ``Purchase*Schema`` variants)."""

    purchase: Purchase | PurchaseRow
    ledger_status: str | None = None
    ledger: dict[str, Any] | None = None
    subsidy_preview: SubsidyPreview | None = None


def duplicate_invoice() -> Conflict:
    return Conflict(
        "Your organization already recorded this invoice of this supplier.",
        fields={"invoice_number": ["Already recorded between these two organizations."]},
    )


def invoice_taken(oem_org_id: int, supplier_org_id: int, invoice_number: str) -> bool:
    """Whether this (OEM, supplier) pair already has the invoice (other OEMs are not asked:
    answering would tell a buyer what another OEM recorded)."""
    return (
        db.session.scalar(
            select(Purchase.id).where(
                Purchase.oem_org_id == oem_org_id,
                Purchase.supplier_org_id == supplier_org_id,
                Purchase.invoice_number == invoice_number,
            )
        )
        is not None
    )


def chip_domestic_origin(supplier_org_id: int, category: str) -> bool | None:
    """The fact the chip-localisation KPI counts, to freeze on a new purchase: None outside
    ``ic.chips``; else whether the supplier's most specific capability covering the category
    (the category itself or its nearest ancestor; failing that, any under it) is domestic."""
    if not (category == CHIPS or category.startswith(CHIPS + ".")):
        return None
    rows = db.session.execute(
        select(Capability.category, Capability.domestic_origin).where(
            Capability.organization_id == supplier_org_id,
            Capability.category.startswith(CHIPS, autoescape=True),
        )
    ).all()
    covering = [r for r in rows if category == r.category or category.startswith(r.category + ".")]
    if covering:
        return bool(max(covering, key=lambda r: len(r.category)).domestic_origin)
    below = [r for r in rows if r.category.startswith(category + ".")]
    return bool(below) and all(r.domestic_origin for r in below)


def add_purchase(
    *,
    oem_org_id: int,
    supplier_org_id: int,
    supplier_site: Site,
    plant: Site,
    category: str,
    amount: Decimal,
    purchased_on: date,
    invoice_number: str,
    po_number: str | None,
    source: PurchaseSource,
    created_by: User,
    created_by_party: PurchaseParty,
    quote_id: int | None = None,
) -> Purchase:
    """Add a purchase with its facts frozen (no commit); awards come confirmed."""
    purchase = Purchase(
        oem_org_id=oem_org_id,
        supplier_org_id=supplier_org_id,
        supplier_site_id=supplier_site.id,
        plant_id=plant.id,
        supplier_site=supplier_site,
        plant=plant,
        site_city_code=supplier_site.city_code,
        site_lat=supplier_site.lat,
        site_lon=supplier_site.lon,
        plant_city_code=plant.city_code,
        plant_lat=plant.lat,
        plant_lon=plant.lon,
        chip_domestic_origin=chip_domestic_origin(supplier_org_id, category),
        category=category,
        amount=amount,
        purchased_on=purchased_on,
        invoice_number=invoice_number,
        po_number=po_number,
        source=source,
        quote_id=quote_id,
        status=PurchaseStatus.PENDING_CONFIRMATION,
        created_by_party=created_by_party,
        created_by_id=created_by.id,
    )
    db.session.add(purchase)
    db.session.flush()  # the id is the outbox row's aggregate id
    if source is PurchaseSource.AWARD:
        confirm_purchase(purchase, by=None, confirmation=Confirmation.AWARD)
    return purchase


def confirm_purchase(purchase: Purchase, *, by: User | None, confirmation: Confirmation) -> None:
    """Confirm (no commit): hold it with its twins if another OEM confirmed the same supplier
    invoice, and tell the ledger."""
    purchase.status = PurchaseStatus.CONFIRMED
    purchase.confirmation = confirmation
    purchase.confirmed_at = utcnow()
    purchase.confirmed_by_id = by.id if by is not None else None
    # Confirmations of one supplier's purchases take turns (a row lock on the supplier), so two
    # OEMs confirming the same invoice at once cannot both miss the other.
    db.session.execute(
        select(Organization.id).where(Organization.id == purchase.supplier_org_id).with_for_update()
    )
    twins = list(
        db.session.scalars(
            select(Purchase)
            .where(
                Purchase.supplier_org_id == purchase.supplier_org_id,
                Purchase.invoice_number == purchase.invoice_number,
                Purchase.oem_org_id != purchase.oem_org_id,
                Purchase.status == PurchaseStatus.CONFIRMED,
            )
            .with_for_update()
        )
    )
    if twins:
        purchase.review = InvoiceReview.PENDING
        for twin in twins:
            if twin.review is None:
                twin.review = InvoiceReview.PENDING
                emit(OutboxTopic.LEDGER_REVERSE, twin.id)  # uncount it if it was counted
    emit(OutboxTopic.LEDGER_RECORD, purchase.id)


def with_subsidy_preview(purchase: Purchase, viewer: User) -> PurchaseView:
    """The response of a new purchase; the preview (what counting it would change) only for
    the buying side. Call it before the commit (after it, the inline ledger worker may already
    have counted the purchase itself)."""
    if viewer.role is Role.SUPPLIER:
        return PurchaseView(purchase)
    fact = ledger.PurchaseFact.of(purchase)
    return PurchaseView(purchase, subsidy_preview=ledger.preview(fact))


def ledger_statuses(purchases: Sequence[Purchase]) -> dict[int, str]:
    """The compact ``ledger.ledger_status`` of many purchases in one query (a page of a list
    costs one query, not one per purchase)."""
    if not purchases:
        return {}

    def entries(kind: EntryKind) -> Any:
        return (
            select(func.count())
            .where(LedgerEntry.purchase_id == Purchase.id, LedgerEntry.kind == kind)
            .scalar_subquery()
        )

    dead = exists().where(
        OutboxEvent.status == OutboxStatus.DEAD,
        OutboxEvent.topic == OutboxTopic.LEDGER_RECORD,
        OutboxEvent.aggregate_id == Purchase.id,
    )
    rows = db.session.execute(
        select(
            Purchase.id,
            entries(EntryKind.RECORD).label("records"),
            entries(EntryKind.REVERSAL).label("reversals"),
            dead.label("dead"),
        ).where(Purchase.id.in_([p.id for p in purchases]))
    )
    countable = {p.id: p.countable for p in purchases}
    statuses = {}
    for row in rows:
        # The same order of precedence as ``ledger.ledger_status``.
        if row.records > row.reversals:
            statuses[row.id] = "recorded"
        elif row.reversals:
            statuses[row.id] = "reversed"
        elif row.dead:
            statuses[row.id] = "failed"
        else:
            statuses[row.id] = "pending" if countable[row.id] else "not_counted"
    return statuses


def visible_purchases(user: User) -> ColumnElement[bool]:
    """The purchases ``user`` may see, as a WHERE clause."""
    if user.role is Role.ADMIN:
        return true()
    if user.role is Role.AUDITOR:
        # Purchases delivered to OEM plants in the auditor's jurisdiction.
        condition = jurisdiction_condition(Purchase.plant_city_code, auditor_city_prefixes(user))
        return true() if condition is None else condition
    if user.organization_id is None:
        return false()
    if user.role is Role.BUYER:
        return Purchase.oem_org_id == user.organization_id
    if user.role is Role.SUPPLIER:
        return Purchase.supplier_org_id == user.organization_id
    return false()


def _party_of(user: User) -> PurchaseParty | None:
    return {Role.BUYER: PurchaseParty.OEM, Role.SUPPLIER: PurchaseParty.SUPPLIER}.get(user.role)


def awaiting(user: User) -> ColumnElement[bool]:
    """Purchases waiting for the confirmation of ``user``'s organization."""
    party = _party_of(user)
    if party is None:
        return false()
    return and_(
        Purchase.status == PurchaseStatus.PENDING_CONFIRMATION,
        Purchase.created_by_party != party,
    )


# --- use cases -----------------------------------------------------------------------------------


def _sides(user: User, data: dict[str, Any]) -> tuple[int | None, int | None, PurchaseParty]:
    """(OEM id, supplier id, creating party) of a new off-platform purchase as the request
    names them: the user's own organization and the counterparty it names (checked later)."""
    own = user.organization_id
    if user.role is Role.BUYER:
        return own, data.get("supplier_org_id"), PurchaseParty.OEM
    return data.get("oem_org_id"), own, PurchaseParty.SUPPLIER


def _record_read(
    user: User, data: dict[str, Any], request: idempotency.IdempotentRequest | None
) -> Row[Any]:
    """Everything recording a purchase checks, in one statement: the idempotency record, the
    counterparty, the supplier site, the plant, whether the invoice is taken, the new id
    (PostgreSQL) and, for a buyer, what the subsidy preview reads. One snapshot: an invoice
    taken by a twin with the same key shows with the twin's idempotency record."""
    oem_id, supplier_id, party = _sides(user, data)
    params = {
        "oem_id": oem_id,
        "supplier_id": supplier_id,
        "site_id": data["supplier_site_id"],
        "plant_id": data["plant_id"],
        "invoice_number": data["invoice_number"],
        "year": data["purchased_on"].year,
    }
    if request is not None:
        params |= {"user_id": request.user_id, "key": request.key}
    statement = _record_statement(party, request is not None, _postgres())
    return db.session.execute(statement, params).one()


@cache
def _record_statement(party: PurchaseParty, replayable: bool, postgres: bool) -> Select[Any]:
    """:func:`_record_read`'s statement, built once per shape with its values as parameters:
    building it (aliases, joins, the preview's subqueries) and its cache key cost more than
    running it."""
    oem_id = bindparam("oem_id", type_=Integer)
    supplier_id = bindparam("supplier_id", type_=Integer)
    other_id, other_kind = (
        (supplier_id, OrgKind.SUPPLIER) if party is PurchaseParty.OEM else (oem_id, OrgKind.OEM)
    )
    one = select(literal(1).label("one")).subquery("one")
    other, site, plant = aliased(Organization), aliased(Site), aliased(Site)
    source: Any = one.outerjoin(
        other,
        and_(other.id == other_id, other.kind == other_kind, other.status == OrgStatus.ACTIVE),
    )
    site_id, plant_id = bindparam("site_id", type_=Integer), bindparam("plant_id", type_=Integer)
    source = source.outerjoin(
        site, and_(site.id == site_id, site.organization_id == supplier_id)
    ).outerjoin(plant, and_(plant.id == plant_id, plant.organization_id == oem_id))
    columns = [
        *_checked_columns(other, site, plant),
        exists()
        .where(
            Purchase.oem_org_id == oem_id,
            Purchase.supplier_org_id == supplier_id,
            Purchase.invoice_number == bindparam("invoice_number", type_=String),
        )
        .label("invoice_taken"),
    ]
    if replayable:
        source = source.outerjoin(
            IdempotencyRecord,
            and_(
                IdempotencyRecord.user_id == bindparam("user_id", type_=Integer),
                IdempotencyRecord.key == bindparam("key", type_=String),
            ),
        )
        columns += [
            IdempotencyRecord.id.label("replay_id"),
            IdempotencyRecord.endpoint.label("replay_endpoint"),
            IdempotencyRecord.request_hash.label("replay_hash"),
            IdempotencyRecord.response_status.label("replay_status"),
            IdempotencyRecord.response_body.label("replay_body"),
        ]
    if postgres:
        # The id now, so the purchase, its outbox row and the idempotency record go in one
        # statement (a request that fails after this leaves a gap, as a rollback would).
        columns.append(func.nextval(PURCHASE_ID_SEQUENCE).label("next_id"))
    if party is PurchaseParty.OEM:
        columns += ledger.preview_inputs(oem_id, bindparam("year", type_=Integer))
    return select(*columns).select_from(source)


def _checked_columns(other: Any, site: Any, plant: Any) -> list[Any]:
    """The counterparty's, the supplier site's and the plant's columns a new purchase checks
    and freezes (``None`` where the outer join found nothing)."""

    def place(alias: Any, name: str, *extra: str) -> list[Any]:
        columns = ("id", "active", *extra, "city_code", "lat", "lon")
        return [getattr(alias, column).label(f"{name}_{column}") for column in columns]

    return [
        other.id.label("other_id"),
        other.legal_name.label("other_name"),
        *place(site, "site"),
        *place(plant, "plant", "kind"),
    ]


def _postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _replay(
    request: idempotency.IdempotentRequest | None, row: Row[Any]
) -> idempotency.StoredResponse | None:
    if request is None or row.replay_id is None:
        return None
    return idempotency.stored_response(
        request, row.replay_endpoint, row.replay_hash, row.replay_status, row.replay_body
    )


def _check_record(user: User, data: dict[str, Any], row: Row[Any]) -> Organization:
    """The checks of a new off-platform purchase, in the order they answer (403, then the
    field 422s, then the 409); the user's own organization."""
    if user.role is Role.BUYER:
        own = require_active_org(user, OrgKind.OEM, "record purchases")
        other_field, other_kind, wrong_field = "supplier_org_id", OrgKind.SUPPLIER, "oem_org_id"
    else:
        own = require_active_org(user, OrgKind.SUPPLIER, "record purchases")
        other_field, other_kind, wrong_field = "oem_org_id", OrgKind.OEM, "supplier_org_id"
    if wrong_field in data:
        raise ValidationFailed(
            fields={wrong_field: ["Your own organization is implied; name the other party."]}
        )
    if other_field not in data:
        raise ValidationFailed(fields={other_field: ["Missing data for required field."]})
    if row.other_id is None:
        raise ValidationFailed(
            fields={other_field: [f"No active {other_kind.value} organization with this id."]}
        )
    if row.site_id is None:
        raise ValidationFailed(fields={"supplier_site_id": ["Not a site of this supplier."]})
    if not row.site_active:
        raise ValidationFailed(fields={"supplier_site_id": ["This site is deactivated."]})
    if row.plant_id is None:
        raise ValidationFailed(fields={"plant_id": ["Not a plant of this OEM."]})
    if not row.plant_active:
        raise ValidationFailed(fields={"plant_id": ["This site is deactivated."]})
    if row.plant_kind is not SiteKind.PLANT:
        raise ValidationFailed(fields={"plant_id": ["Not a plant of this OEM."]})
    if row.invoice_taken:
        raise duplicate_invoice()
    return own


def record_purchase(
    user: User, data: dict[str, Any], idempotency_key: str | None = None
) -> idempotency.StoredResponse:
    """Either party records an off-platform purchase; it waits for the other party's
    confirmation. A buyer's answer previews its subsidy effect; a repeated Idempotency-Key
    replays the first answer.

    Lean by design (it is the busiest write): one statement reads every check, the preview's
    inputs and the new id; one statement writes the purchase, its outbox row and the
    idempotency record (PostgreSQL; three elsewhere). The answer is serialised once, before
    the commit, and sent as it is.
    """
    if user.role not in (Role.BUYER, Role.SUPPLIER):
        raise Forbidden("Only buyers and suppliers record purchases.")
    request = idempotency.idempotent_request(user, RECORD_ENDPOINT, idempotency_key, data)
    row = _record_read(user, data, request)
    if stored := _replay(request, row):
        return stored
    own = _check_record(user, data, row)
    values = _new_purchase(user, data, row)
    try:
        next_id: int | None = getattr(row, "next_id", None)
        written = next_id is None  # elsewhere than PostgreSQL: the purchase goes in first
        if next_id is None:
            next_id = int(
                db.session.execute(
                    insert(Purchase).values(values).returning(Purchase.id)
                ).scalar_one()
            )
        recorded = _recorded(next_id, values, own.legal_name, row.other_name)
        preview = None
        if user.role is not Role.SUPPLIER:
            preview = ledger.preview_from(_fact_of(recorded), row)
        body = _RECORDED_SCHEMA.dump(PurchaseView(recorded, subsidy_preview=preview))
        outbox_id = _write_together(
            None if written else {"id": next_id, **values},
            idempotency.remembered_values(request, 201, body) if request else None,
            _awaiting_event(recorded, creator_org_id=own.id, creator_name=own.legal_name),
        )
        emitted(OutboxTopic.EVENT_DISPATCH, outbox_id)
        commit()
    except IntegrityError:
        # A concurrent twin committed first (same key, or the same invoice).
        rollback()
        if request and (stored := idempotency.find_replay(request)):
            return stored
        raise duplicate_invoice() from None
    return idempotency.StoredResponse(201, body, replayed=False)


_RECORDED_SCHEMA = PurchaseRecordedSchema()  # one instance: dumping shares no state


def _new_purchase(user: User, data: dict[str, Any], row: Row[Any]) -> dict[str, Any]:
    """The columns of a new purchase waiting for confirmation, the sites' places frozen as
    :func:`_record_read` found them."""
    oem_id, supplier_id, party = _sides(user, data)
    assert oem_id is not None and supplier_id is not None
    return {
        "oem_org_id": oem_id,
        "supplier_org_id": supplier_id,
        "supplier_site_id": row.site_id,
        "plant_id": row.plant_id,
        "site_city_code": row.site_city_code,
        "site_lat": row.site_lat,
        "site_lon": row.site_lon,
        "plant_city_code": row.plant_city_code,
        "plant_lat": row.plant_lat,
        "plant_lon": row.plant_lon,
        "chip_domestic_origin": chip_domestic_origin(supplier_id, data["category"]),
        "category": data["category"],
        "amount": data["amount"],
        "purchased_on": data["purchased_on"],
        "invoice_number": data["invoice_number"],
        "po_number": data.get("po_number"),
        "source": PurchaseSource.DIRECT,
        "quote_id": None,
        "status": PurchaseStatus.PENDING_CONFIRMATION,
        "created_by_party": party,
        "created_by_id": user.id,
        "created_at": utcnow(),
    }


def _recorded(
    purchase_id: int, values: dict[str, Any], own_name: str, other_name: str
) -> PurchaseRow:
    """The purchase just written, as the answer and the event describe it."""
    oem_name, supplier_name = (
        (own_name, other_name)
        if values["created_by_party"] is PurchaseParty.OEM
        else (other_name, own_name)
    )
    return PurchaseRow(
        id=purchase_id, oem=_Named(oem_name), supplier=_Named(supplier_name), **values
    )


@dataclass(frozen=True)
class _Named:
    legal_name: str


@dataclass
class PurchaseRow:
    """A purchase written with plain SQL (recorded, or confirmed), as ``PurchaseSchema`` reads
    it: no ORM entity to build nor to reload after the commit."""

    id: int
    oem: _Named
    supplier: _Named
    oem_org_id: int
    supplier_org_id: int
    supplier_site_id: int
    plant_id: int
    site_city_code: str
    site_lat: float
    site_lon: float
    plant_city_code: str
    plant_lat: float
    plant_lon: float
    chip_domestic_origin: bool | None
    category: str
    amount: Decimal
    purchased_on: date
    invoice_number: str
    po_number: str | None
    source: PurchaseSource
    quote_id: int | None
    status: PurchaseStatus
    created_by_party: PurchaseParty
    created_by_id: int
    created_at: datetime
    confirmation: Confirmation | None = None
    confirmed_at: datetime | None = None
    disputed_at: datetime | None = None
    dispute_reason: str | None = None
    review: InvoiceReview | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None


def _fact_of(purchase: PurchaseRow) -> ledger.PurchaseFact:
    return ledger.PurchaseFact(
        purchase_id=purchase.id,
        oem_org_id=purchase.oem_org_id,
        supplier_org_id=purchase.supplier_org_id,
        site_city_code=purchase.site_city_code,
        plant_city_code=purchase.plant_city_code,
        site=(purchase.site_lat, purchase.site_lon),
        plant=(purchase.plant_lat, purchase.plant_lon),
        amount=Decimal(purchase.amount),
        purchased_on=purchase.purchased_on,
        countable=False,  # pending confirmation
    )


# What every new outbox row written here starts with (its topic, aggregate, time and any
# payload are the writer's); a pending row that no worker has tried yet.
_NEW_OUTBOX_ROW: dict[str, Any] = {"payload": {}, "status": OutboxStatus.PENDING, "attempts": 0}


def _awaiting_event(
    purchase: PurchaseRow, *, creator_org_id: int, creator_name: str
) -> dict[str, Any]:
    """The outbox row (its columns) telling the other party a purchase waits for its
    confirmation."""
    other = (
        purchase.supplier_org_id if creator_org_id == purchase.oem_org_id else purchase.oem_org_id
    )
    payload = event_payload(
        EventKind.PURCHASE_AWAITING_CONFIRMATION,
        subject_type="purchase",
        subject_id=purchase.id,
        data={
            "purchase_id": purchase.id,
            "counterparty": creator_name,
            "invoice_number": purchase.invoice_number,
            "amount": format(purchase.amount, "f"),
            "purchased_on": purchase.purchased_on.isoformat(),
            "category": purchase.category,
        },
    )
    return {
        "topic": OutboxTopic.EVENT_DISPATCH,
        "aggregate_id": other,
        **_NEW_OUTBOX_ROW,
        "payload": payload,
        "created_at": utcnow(),
    }


_WRITTEN_TOGETHER = (("purchase", Purchase), ("remembered", IdempotencyRecord))


def _write_together(
    purchase: dict[str, Any] | None, remembered: dict[str, Any] | None, outbox: dict[str, Any]
) -> int:
    """Insert the ``purchase``, the ``remembered`` idempotency record (each when given) and the
    ``outbox`` row (its id returned): one statement of data-modifying CTEs on PostgreSQL, one
    statement each elsewhere."""
    rows = {"purchase": purchase, "remembered": remembered}
    if not _postgres():
        for name, model in _WRITTEN_TOGETHER:
            if (values := rows[name]) is not None:
                db.session.execute(insert(model).values(values))
        return int(
            db.session.execute(
                insert(OutboxEvent).values(outbox).returning(OutboxEvent.id)
            ).scalar_one()
        )
    shape = tuple(None if values is None else tuple(values) for values in rows.values())
    params = {f"outbox_{column}": value for column, value in outbox.items()}
    for name, values in rows.items():
        params |= {f"{name}_{column}": value for column, value in (values or {}).items()}
    return int(db.session.execute(_together_statement(shape, tuple(outbox)), params).scalar_one())


@cache
def _together_statement(
    shape: tuple[tuple[str, ...] | None, ...], outbox_columns: tuple[str, ...]
) -> Select[Any]:
    """:func:`_write_together`'s statement for these columns, built once: each value a
    parameter named ``<row>_<column>`` (typed by its column)."""

    def inserting(model: Any, name: str, columns: Sequence[str]) -> Insert:
        return insert(model).values({column: bindparam(f"{name}_{column}") for column in columns})

    outbox_row = (
        inserting(OutboxEvent, "outbox", outbox_columns).returning(OutboxEvent.id).cte("outbox_row")
    )
    writes = [
        inserting(model, name, columns).cte(f"write_{name}")
        for (name, model), columns in zip(_WRITTEN_TOGETHER, shape, strict=True)
        if columns is not None
    ]
    return select(outbox_row.c.id).add_cte(*writes, nest_here=True)


def _locked_purchase(user: User, purchase_id: int) -> Purchase:
    check_id(purchase_id, "Purchase")
    purchase = db.session.scalar(
        select(Purchase)
        .where(Purchase.id == purchase_id, visible_purchases(user))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if purchase is None:
        raise NotFound("Purchase not found.")
    return purchase


def _require_counterparty(user: User, purchase: Purchase, doing: str) -> None:
    if _party_of(user) is None:
        raise Forbidden(f"Only the parties of a purchase can {doing} it.")
    if purchase.created_by_party is _party_of(user):
        raise Forbidden(
            f"Your organization recorded this purchase; the other party must {doing} it."
        )
    if purchase.status is not PurchaseStatus.PENDING_CONFIRMATION:
        raise Conflict(f"This purchase is {purchase.status.value}: there is nothing to {doing}.")


def purchase_confirm(user: User, purchase_id: int) -> PurchaseView:
    """The other party confirms an off-platform purchase; the ledger then counts it.

    Confirming again what the same party confirmed answers as the first time and changes
    nothing: a client whose first answer was lost after the commit (a dropped connection, a
    database restart) may retry without being told of a conflict.

    The usual case is one guarded UPDATE … RETURNING (it locks the row and answers with it);
    when it matches nothing, the row is read under lock to say why (404, 403, 409) or to
    answer a repeated confirmation."""
    check_id(purchase_id, "Purchase")
    party = _party_of(user)
    if party is not None:
        confirmed = _confirm_pending(user, purchase_id, party)
        if confirmed is not None:
            _hold_twins(confirmed)
            commit()
            return PurchaseView(confirmed)
    purchase = _locked_purchase(user, purchase_id)
    if (
        purchase.status is PurchaseStatus.CONFIRMED
        and purchase.confirmation is Confirmation.COUNTERPARTY
        and party is not None
        and purchase.created_by_party is not party
    ):
        return PurchaseView(purchase)
    _require_counterparty(user, purchase, "confirm")
    confirm_purchase(purchase, by=user, confirmation=Confirmation.COUNTERPARTY)
    commit()
    return PurchaseView(purchase)


_ROW_FIELDS = tuple(f for f in PurchaseRow.__dataclass_fields__ if f not in ("oem", "supplier"))


def _confirm_pending(user: User, purchase_id: int, party: PurchaseParty) -> PurchaseRow | None:
    """Confirm the purchase if it waits for ``party`` (the row locked) and queue it for the
    ledger, or None. On PostgreSQL one statement (the outbox row inserted by a CTE of the
    UPDATE), so the supplier's lock that :func:`_hold_twins` takes next is held for one
    statement fewer; elsewhere the outbox row follows."""
    postgres = _postgres()
    now = utcnow()
    row = db.session.execute(
        _confirm_statement(party, postgres),
        {
            "confirm_id": purchase_id,
            "confirm_org": user.organization_id,
            "confirm_at": now,
            "confirm_by": user.id,
        },
    ).one_or_none()
    if row is None:
        return None
    outbox_id = (
        row.outbox_id if postgres else _insert_outbox(OutboxTopic.LEDGER_RECORD, row.id, now)
    )
    emitted(OutboxTopic.LEDGER_RECORD, outbox_id)
    return PurchaseRow(
        oem=_Named(row.oem_name),
        supplier=_Named(row.supplier_name),
        **{f: getattr(row, f) for f in _ROW_FIELDS},
    )


@cache
def _confirm_statement(party: PurchaseParty, postgres: bool) -> Any:
    """The guarded UPDATE … RETURNING of :func:`_confirm_pending` for ``party``'s users (the
    purchases they see: their organization's), built once with its values as parameters; on
    PostgreSQL with the ``ledger.record`` outbox row of the confirmed purchase (``outbox_id``)."""
    table = Purchase.__table__.c
    own = Purchase.oem_org_id if party is PurchaseParty.OEM else Purchase.supplier_org_id
    names = {
        "oem_name": select(Organization.legal_name)
        .where(Organization.id == Purchase.oem_org_id)
        .scalar_subquery(),
        "supplier_name": select(Organization.legal_name)
        .where(Organization.id == Purchase.supplier_org_id)
        .scalar_subquery(),
    }
    at = bindparam("confirm_at", type_=table.confirmed_at.type)
    confirming = (
        update(Purchase)
        .where(
            Purchase.id == bindparam("confirm_id", type_=Integer),
            own == bindparam("confirm_org", type_=Integer),
            Purchase.status == PurchaseStatus.PENDING_CONFIRMATION,
            Purchase.created_by_party != party,
        )
        .values(
            status=PurchaseStatus.CONFIRMED,
            confirmation=Confirmation.COUNTERPARTY,
            confirmed_at=at,
            confirmed_by_id=bindparam("confirm_by"),
        )
        .returning(*(table[f] for f in _ROW_FIELDS), *(v.label(k) for k, v in names.items()))
        .execution_options(synchronize_session=False)
    )
    if not postgres:
        return confirming
    confirmed = confirming.cte("confirmed")
    outbox = OutboxEvent.__table__.c
    fixed = {"topic": OutboxTopic.LEDGER_RECORD, **_NEW_OUTBOX_ROW}
    queued = (
        insert(OutboxEvent)
        .from_select(
            [*fixed, "aggregate_id", "created_at"],
            select(
                *(literal(value, outbox[column].type) for column, value in fixed.items()),
                confirmed.c.id,
                at,
            ),
        )
        .returning(OutboxEvent.id)
        .cte("queued")
    )
    return select(confirmed, queued.c.id.label("outbox_id")).join_from(confirmed, queued, true())


@cache
def _twin_statements() -> tuple[Select[int], Select[int, InvoiceReview | None]]:
    """:func:`_hold_twins`' two reads, built once: lock the supplier; the other OEMs'
    confirmed purchases of the same supplier invoice, locked."""
    supplier = bindparam("twin_supplier", type_=Integer)
    return (
        select(Organization.id).where(Organization.id == supplier).with_for_update(),
        select(Purchase.id, Purchase.review)
        .where(
            Purchase.supplier_org_id == supplier,
            Purchase.invoice_number == bindparam("twin_invoice", type_=String),
            Purchase.oem_org_id != bindparam("twin_oem", type_=Integer),
            Purchase.status == PurchaseStatus.CONFIRMED,
        )
        .with_for_update(),
    )


def _hold_twins(purchase: PurchaseRow) -> None:
    """What ``confirm_purchase`` does about another OEM's confirmed purchase of the same
    supplier invoice, for a purchase confirmed with plain SQL (the same locks, in the same
    order: the purchase row, then the supplier)."""
    lock_supplier, find_twins = _twin_statements()
    db.session.execute(lock_supplier, {"twin_supplier": purchase.supplier_org_id})
    twins = list(
        db.session.execute(
            find_twins,
            {
                "twin_supplier": purchase.supplier_org_id,
                "twin_invoice": purchase.invoice_number,
                "twin_oem": purchase.oem_org_id,
            },
        )
    )
    if not twins:
        return
    purchase.review = InvoiceReview.PENDING
    db.session.execute(
        update(Purchase)
        .where(Purchase.id == purchase.id)
        .values(review=InvoiceReview.PENDING)
        .execution_options(synchronize_session=False)
    )
    for twin in twins:
        if twin.review is None:
            db.session.execute(
                update(Purchase)
                .where(Purchase.id == twin.id)
                .values(review=InvoiceReview.PENDING)
                .execution_options(synchronize_session=False)
            )
            # uncount it if it was counted
            emitted(OutboxTopic.LEDGER_REVERSE, _insert_outbox(OutboxTopic.LEDGER_REVERSE, twin.id))


def _insert_outbox(topic: OutboxTopic, aggregate_id: int, at: datetime | None = None) -> int:
    """An outbox row inserted with plain SQL; its id (to pass to ``emitted``)."""
    return int(
        db.session.execute(
            _outbox_statement(),
            {"outbox_topic": topic, "outbox_aggregate": aggregate_id, "outbox_at": at or utcnow()},
        ).scalar_one()
    )


@cache
def _outbox_statement() -> Any:
    """:func:`_insert_outbox`'s INSERT, built once with its values as parameters."""
    return (
        insert(OutboxEvent)
        .values(
            topic=bindparam("outbox_topic"),
            aggregate_id=bindparam("outbox_aggregate"),
            **_NEW_OUTBOX_ROW,
            created_at=bindparam("outbox_at"),
        )
        .returning(OutboxEvent.id)
    )


def purchase_dispute(user: User, purchase_id: int, reason: str) -> PurchaseView:
    """The other party disputes an off-platform purchase; it never reaches the ledger."""
    purchase = _locked_purchase(user, purchase_id)
    _require_counterparty(user, purchase, "dispute")
    purchase.status = PurchaseStatus.DISPUTED
    purchase.disputed_at = utcnow()
    purchase.disputed_by_id = user.id
    purchase.dispute_reason = reason
    commit()
    return PurchaseView(purchase)


def purchase_review(user: User, purchase_id: int, decision: str, reason: str) -> PurchaseView:
    """An auditor releases (the ledger may count it) or rejects (never) a purchase held for a
    duplicate invoice."""
    purchase = _locked_purchase(user, purchase_id)
    if purchase.review is not InvoiceReview.PENDING or purchase.status is not (
        PurchaseStatus.CONFIRMED
    ):
        raise Conflict("This purchase is not waiting for an invoice review.")
    purchase.review = InvoiceReview.RELEASED if decision == "release" else InvoiceReview.REJECTED
    purchase.reviewed_at = utcnow()
    purchase.reviewed_by_id = user.id
    purchase.review_reason = reason
    emit(OutboxTopic.LEDGER_RECORD, purchase.id)
    commit()
    return PurchaseView(purchase)


def purchase_get(user: User, purchase_id: int) -> PurchaseView:
    """One purchase the user may see (404 otherwise), with its ledger status and entries
    (the verdict only, for the supplier)."""
    check_id(purchase_id, "Purchase")
    purchase = db.session.scalar(
        select(Purchase).where(Purchase.id == purchase_id, visible_purchases(user))
    )
    if purchase is None:
        raise NotFound("Purchase not found.")
    confidential = user.role is Role.SUPPLIER
    return PurchaseView(
        purchase, ledger=ledger.ledger_status(purchase.id, confidential=confidential)
    )


def purchase_list(user: User, query: dict[str, Any]) -> Page:
    """The purchases the user may see, filtered, sorted and paginated, each with its compact
    ledger status."""
    stmt: Select[Any] = (
        select(Purchase)
        .where(visible_purchases(user))
        .options(selectinload(Purchase.oem), selectinload(Purchase.supplier))
    )
    if "year" in query:
        year = query["year"]
        stmt = stmt.where(
            Purchase.purchased_on >= date(year, 1, 1), Purchase.purchased_on <= date(year, 12, 31)
        )
    if "supplier" in query:
        stmt = stmt.where(Purchase.supplier_org_id == query["supplier"])
    if "oem" in query:
        stmt = stmt.where(Purchase.oem_org_id == query["oem"])
    if "status" in query:
        stmt = stmt.where(Purchase.status == PurchaseStatus(query["status"]))
    if "source" in query:
        stmt = stmt.where(Purchase.source == PurchaseSource(query["source"]))
    if query.get("awaiting") == "me":
        stmt = stmt.where(awaiting(user))
    if "review" in query:
        if user.role not in (Role.AUDITOR, Role.ADMIN):
            raise ValidationFailed(fields={"review": ["Only auditors and admins filter by it."]})
        stmt = stmt.where(
            Purchase.review == InvoiceReview(query["review"]),
            Purchase.status == PurchaseStatus.CONFIRMED,
        )
    stmt = stmt.order_by(*order_by(query["sort"], _SORT_COLUMNS, Purchase.id))
    page = paginate(stmt, query["page"], query["per_page"])
    statuses = ledger_statuses(page.items)
    page.items = [PurchaseView(p, ledger_status=statuses[p.id]) for p in page.items]
    return page


def purchase_cancel(user: User, purchase_id: int, reason: str) -> Purchase:
    """Cancel a purchase: its buyer's organization or an admin, any time; a supplier, one it
    recorded itself while unconfirmed. A counted purchase is reversed by the ledger."""
    purchase = _locked_purchase(user, purchase_id)
    if user.role is Role.SUPPLIER and not (
        purchase.created_by_party is PurchaseParty.SUPPLIER
        and purchase.status is PurchaseStatus.PENDING_CONFIRMATION
    ):
        raise Forbidden("A supplier may only withdraw an unconfirmed purchase it recorded.")
    if user.role is Role.AUDITOR:
        raise Forbidden("Auditors do not cancel purchases.")
    if purchase.status in (PurchaseStatus.CANCELLED, PurchaseStatus.DISPUTED):
        raise Conflict(f"This purchase is already {purchase.status.value}.")
    was_confirmed = purchase.status is PurchaseStatus.CONFIRMED
    purchase.status = PurchaseStatus.CANCELLED
    purchase.cancelled_at = utcnow()
    purchase.cancel_reason = reason
    if was_confirmed:
        emit(OutboxTopic.LEDGER_REVERSE, purchase.id)
    commit()
    return purchase
