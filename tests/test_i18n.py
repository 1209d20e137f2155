"""Error messages in Simplified Chinese or English by Accept-Language; codes never change."""

from __future__ import annotations

import pytest
from babel.messages import mofile, pofile

from market.i18n import TEMPLATES, TRANSLATIONS
from market.models import OrgKind
from tests import factories

CATALOG = TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES"


@pytest.mark.parametrize(
    ("accept", "language"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR, zh;q=0.5", "zh-CN"),  # French is not offered: the next choice
        ("de", "en"),
        (None, "en"),
    ],
)
def test_the_envelope_speaks_the_clients_language(client, accept, language):
    headers = {"Accept-Language": accept} if accept else {}
    response = client.get("/api/v1/nowhere", headers=headers)
    error = response.get_json()["error"]
    assert response.status_code == 404 and error["code"] == "not_found"
    assert response.headers["Content-Language"] == language
    assert "Accept-Language" in response.headers["Vary"]
    if language == "zh-CN":
        assert error["message"].startswith("服务器上没有请求的 URL")
    else:
        assert error["message"].startswith("The requested URL was not found")


def test_domain_errors_keep_their_code_in_chinese(client):
    response = client.get("/api/v1/plants", headers={"Accept-Language": "zh-CN"})
    error = response.get_json()["error"]
    assert (response.status_code, error["code"]) == (401, "unauthorized")
    assert error["message"] == "需要登录认证。"


def test_field_messages_are_translated_values_and_all(client, db_session):
    buyer = factories.auth(factories.make_user(factories.make_org(OrgKind.OEM)))
    body = {"name": 7, "lat": 123.0, "lon": 113.5, "colour": "red"}
    chinese = client.post(
        "/api/v1/plants", json=body, headers=buyer | {"Accept-Language": "zh-CN"}
    ).get_json()["error"]
    english = client.post("/api/v1/plants", json=body, headers=buyer).get_json()["error"]
    assert chinese["code"] == english["code"] == "validation_error"
    assert english["message"] == "The request has invalid fields."
    assert chinese["message"] == "请求中有字段无效。"
    assert set(chinese["fields"]) == set(english["fields"])
    assert english["fields"]["city_code"] == ["Missing data for required field."]
    assert chinese["fields"]["city_code"] == ["缺少必填字段。"]
    assert chinese["fields"]["name"] == ["不是有效的字符串。"]
    assert chinese["fields"]["colour"] == ["未知字段。"]
    # A message with values: the values are kept, the words translated.
    assert english["fields"]["lat"] == [
        "Must be greater than or equal to -90 and less than or equal to 90."
    ]
    assert chinese["fields"]["lat"] == ["必须大于或等于 -90 且小于或等于 90。"]


def test_a_message_without_a_translation_is_sent_in_english(client, db_session):
    # A use case's own sentence (not in the catalog yet) is not lost or garbled.
    from market.i18n import translate

    with client.application.test_request_context(headers={"Accept-Language": "zh"}):
        assert translate("Something only this use case says.") == (
            "Something only this use case says."
        )
        assert translate("Must be one of: 1, 2, 3.") == "必须是以下之一：1, 2, 3。"


def test_the_catalog_is_complete_and_compiled():
    source = pofile.read_po((CATALOG / "messages.po").open("rb"))
    compiled = mofile.read_mo((CATALOG / "messages.mo").open("rb"))
    messages = {m.id: m.string for m in source if m.id}
    assert all(messages.values()), [k for k, v in messages.items() if not v]
    assert set(TEMPLATES) <= set(messages)
    # The .mo shipped is the .po compiled (`pybabel compile -d market/translations`).
    assert {m.id: m.string for m in compiled if m.id} == messages
    for template in TEMPLATES:  # the same placeholders in both languages
        names = {part.split(")")[0] for part in template.split("%(")[1:]}
        assert {part.split(")")[0] for part in messages[template].split("%(")[1:]} == names
