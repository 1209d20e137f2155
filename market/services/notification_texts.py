"""What a notification says, in Simplified Chinese or English, written when it is read or sent.

An inbox row and an email job keep the event's facts, not a text: a reader gets the title and
body in their language when they read, an email in its recipient's language when it is sent.
Each event kind has a title and a lead sentence per language; the event's facts follow as
labelled lines, so a kind whose data this module does not know yet (a newer emitter's) still
reads sensibly: its subject, its kind and its facts. Placeholders a template names but the
event lacks read as "—", never as an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

ZH = "zh-CN"
EN = "en"
LANGUAGES = (ZH, EN)
MAX_DETAIL_LINES = 20

SUBJECTS: dict[str, tuple[str, str]] = {  # subject_type: (zh-CN, en)
    "certification": ("证书", "Certification"),
    "demand": ("需求", "Demand"),
    "quote": ("报价", "Quote"),
    "purchase": ("采购", "Purchase"),
    "claim": ("申领", "Claim"),
    "webhook_endpoint": ("Webhook 端点", "Webhook endpoint"),
    "endpoint": ("Webhook 端点", "Webhook endpoint"),
    "invitation": ("邀请", "Invitation"),
}

# kind: {language: (title, lead sentence)}; {subject} and {label} are always available.
TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "certification.expiring": {
        ZH: (
            "{subject}{label}即将到期",
            "证书将于 {valid_until} 到期(剩余 {days_left} 天),请上传续期证书以保持匹配资格。",
        ),
        EN: (
            "{subject}{label} expires soon",
            "It expires on {valid_until} (in {days_left} days); upload the renewed "
            "certificate to stay eligible.",
        ),
    },
    "certification.expired": {
        ZH: ("{subject}{label}已过期", "证书已于 {valid_until} 过期,不再计入匹配。"),
        EN: (
            "{subject}{label} has expired",
            "It expired on {valid_until} and no longer counts for matching.",
        ),
    },
    "certification.verified": {
        ZH: ("{subject}{label}已通过审核", "该证书已核验,现计入匹配。"),
        EN: (
            "{subject}{label} verified",
            "The certificate was verified and now counts for matching.",
        ),
    },
    "certification.rejected": {
        ZH: ("{subject}{label}未通过审核", "该证书被驳回,原因:{reason}"),
        EN: ("{subject}{label} rejected", "The certificate was rejected: {reason}"),
    },
    "demand.published": {
        ZH: ("新的匹配需求:{subject}{label}", "一项您有资格报价的需求已发布。"),
        EN: (
            "New matching demand: {subject}{label}",
            "A demand you are eligible to quote for was published.",
        ),
    },
    "quote.received": {
        ZH: ("{subject}:收到新报价{label}", "您的需求收到了一份新报价。"),
        EN: ("{subject}: new quote{label}", "Your demand received a new quote."),
    },
    "quote.revised": {
        ZH: ("{subject}已修改{label}", "供应商修改了报价,请查看最新版本及历史。"),
        EN: (
            "{subject} revised{label}",
            "The supplier revised its quote; see the latest version and its history.",
        ),
    },
    "quote.awarded": {
        ZH: ("{subject}已中标{label}", "恭喜,您的报价已被采纳。"),
        EN: ("{subject} awarded{label}", "Congratulations: your quote was awarded."),
    },
    "quote.not_awarded": {
        ZH: ("{subject}未中标{label}", "该需求已授予其他报价。"),
        EN: ("{subject} not awarded{label}", "The demand was awarded to another quote."),
    },
    "purchase.awaiting_confirmation": {
        ZH: (
            "{subject}{label}待您确认",
            "{counterparty} 登记了一笔采购(金额 {amount}),请确认或提出异议。",
        ),
        EN: (
            "{subject}{label} awaits your confirmation",
            "{counterparty} recorded a purchase (amount {amount}); confirm it or dispute it.",
        ),
    },
    "purchase.recorded": {
        ZH: (
            "{subject}{label}已记入台账",
            "判定:{verdict}(原因 {reason},距离 {distance_km} 公里)。",
        ),
        EN: (
            "{subject}{label} entered the ledger",
            "Verdict: {verdict} (reason {reason}, distance {distance_km} km).",
        ),
    },
    "claim.state_changed": {
        ZH: ("{subject}状态变更{label}", "申领状态已变更为 {state}。"),
        EN: ("{subject} changed state{label}", "The claim is now {state}."),
    },
    "claim.evidence_requested": {
        ZH: ("{subject}需补充材料{label}", "审核方要求补充证明材料。"),
        EN: ("{subject}: evidence requested{label}", "The reviewer asks for more evidence."),
    },
    "webhook.endpoint_disabled": {
        ZH: ("{subject}已停用{label}", "多次投递失败后,该 Webhook 端点已被自动停用。"),
        EN: (
            "{subject} disabled{label}",
            "The webhook endpoint was disabled after repeated delivery failures.",
        ),
    },
}

FIELD_LABELS: dict[str, tuple[str, str]] = {
    "standard": ("标准", "Standard"),
    "number": ("编号", "Number"),
    "valid_until": ("有效期至", "Valid until"),
    "days_left": ("剩余天数", "Days left"),
    "reason": ("原因", "Reason"),
    "title": ("标题", "Title"),
    "category": ("品类", "Category"),
    "amount": ("金额", "Amount"),
    "invoice_number": ("发票号", "Invoice number"),
    "purchased_on": ("采购日期", "Purchased on"),
    "counterparty": ("对方", "Counterparty"),
    "near_shore": ("近岸", "Near-shore"),
    "distance_km": ("距离(公里)", "Distance (km)"),
    "increment": ("增量", "Increment"),
    "subsidy": ("补贴", "Subsidy"),
    "year": ("年度", "Year"),
    "purchase_id": ("采购编号", "Purchase"),
    "demand_id": ("需求编号", "Demand"),
    "quote_id": ("报价编号", "Quote"),
    "claim_id": ("申领编号", "Claim"),
    "state": ("状态", "State"),
    "rank": ("排名", "Rank"),
    "url": ("地址", "URL"),
}
# Facts looked for, in order, to name the subject in the title.
LABEL_KEYS = ("title", "demand_title", "standard", "invoice_number", "name", "url")
YES_NO = {ZH: ("是", "否"), EN: ("yes", "no")}
VERDICT = {ZH: ("计为近岸采购", "不计为近岸采购"), EN: ("near-shore", "not near-shore")}
MISSING = "—"


class _Facts(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return MISSING


def language_of(value: str | None) -> str:
    """``zh-CN`` for any Chinese tag (and by default), ``en`` for English."""
    if value and value.replace("_", "-").split("-")[0].lower() == "en":
        return EN
    return ZH


def _show(value: Any, lang: str) -> str:
    if isinstance(value, bool):
        return YES_NO[lang][0 if value else 1]
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def subject_name(subject_type: str, subject_id: int, lang: str) -> str:
    names = SUBJECTS.get(subject_type)
    name = names[0 if lang == ZH else 1] if names else subject_type.replace("_", " ")
    return f"{name} #{subject_id}"


def _facts(kind: str, subject_type: str, subject_id: int, data: Mapping[str, Any], lang: str):
    facts = _Facts({k: _show(v, lang) for k, v in data.items() if v is not None})
    facts["subject"] = subject_name(subject_type, subject_id, lang)
    label = next((str(data[k]) for k in LABEL_KEYS if data.get(k)), None)
    facts["label"] = (f"「{label}」" if lang == ZH else f" “{label}”") if label else ""
    if "near_shore" in data:
        facts["verdict"] = VERDICT[lang][0 if data["near_shore"] else 1]
    return facts


def _details(data: Mapping[str, Any], lang: str) -> list[str]:
    lines = []
    for key, value in data.items():
        if value is None or key == "message":
            continue
        labels = FIELD_LABELS.get(key)
        name = labels[0 if lang == ZH else 1] if labels else key
        lines.append(f"{name}: {_show(value, lang)}")
    return lines[:MAX_DETAIL_LINES]


def render(
    kind: str, subject_type: str, subject_id: int, data: Mapping[str, Any], lang: str
) -> tuple[str, str]:
    """(title, body) of an event for a reader of ``lang`` (``zh-CN`` or ``en``)."""
    lang = language_of(lang)
    facts = _facts(kind, subject_type, subject_id, data, lang)
    template = TEMPLATES.get(kind, {}).get(lang)
    if template is None:
        title, lead = f"{facts['subject']}: {kind}", ""
    else:
        title, lead = (part.format_map(facts) for part in template)
    if data.get("message"):  # a notice migrated from the old table keeps its English text
        lead = str(data["message"])
    body = "\n".join([lead, *_details(data, lang)] if lead else _details(data, lang))
    return title, body


INVITATION = {
    ZH: (
        "邀请您加入 {organization}",
        "{inviter} 邀请您以{role}身份加入 {organization}(粤链通 StrongChain Exchange)。\n"
        "请在 {expires_at} 前打开以下链接设置密码并加入(链接仅可使用一次):\n{link}\n\n"
        "如果您不认识邀请人,请忽略本邮件。",
    ),
    EN: (
        "You are invited to join {organization}",
        "{inviter} invites you to join {organization} on StrongChain Exchange as {role}.\n"
        "Open this link before {expires_at} to set your password and join (it works once):\n"
        "{link}\n\nIf you do not know the sender, ignore this email.",
    ),
}
ROLES = {ZH: {"admin": "管理员", "member": "成员"}, EN: {"admin": "an admin", "member": "a member"}}


def render_invitation(facts: Mapping[str, Any], lang: str) -> tuple[str, str]:
    """(subject, body) of an invitation email."""
    lang = language_of(lang)
    values = _Facts({k: str(v) for k, v in facts.items() if v is not None})
    values["role"] = ROLES[lang].get(str(facts.get("org_role")), values["org_role"])
    title, body = INVITATION[lang]
    return title.format_map(values), body.format_map(values)
