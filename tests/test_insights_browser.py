"""/insights in a real browser, offline: an OEM buyer signs in on the page and sees the gap map
with one marker per supplier counted, the gap table, and the KPI charts (or "暂无数据").

Headless Chromium (tests/browser.py) reaches nothing but the app on loopback. The page must run
under its CSP without a violation, log no console error and throw no exception.
"""

from __future__ import annotations

import base64
import json
import os

import pytest

from market.geo import KM_PER_DEGREE
from market.models import OrgKind
from tests import factories
from tests.browser import CHROMIUM, offline_page
from tests.conftest import make_test_app
from tests.faults.harness import ApiServer

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="chromium is not installed (apt-get install chromium; CI installs it)",
)

PLANT_AT = (23.0, 113.4)
MARKERS_IN_SVG = (
    "(() => { const o = document.querySelector('#map object');"
    " const d = o && o.contentDocument;"
    " return d && d.querySelector('svg') ? d.querySelectorAll('.supplier-marker').length : null;"
    " })()"
)
CHARTS_SETTLED = (
    "Array.from(document.querySelectorAll('.chart')).every(f => {"
    " const img = f.querySelector('img');"
    " return f.textContent.includes('暂无数据') || (img && img.complete && img.naturalWidth > 0);"
    " })"
)


@pytest.fixture(scope="module")
def server(app, database_url):
    with ApiServer(make_test_app(database_url)) as running:
        yield running


@pytest.fixture
def world(committed_db):
    oem = factories.make_org(OrgKind.OEM)
    factories.make_site(oem, at=PLANT_AT, name="番禺总装厂")
    buyer = factories.make_user(oem)
    for km, tier, category in ((10, 1, "chassis.braking.foundation"), (40, 2, "chassis.steering"),
                               (70, 3, "body.seats"), (150, 1, "chassis.suspension")):  # fmt: skip
        supplier = factories.make_org(OrgKind.SUPPLIER, tier=tier)
        factories.make_site(supplier, at=(PLANT_AT[0] + km / KM_PER_DEGREE, PLANT_AT[1]))
        factories.make_capability(supplier, category)
    committed_db.commit()
    return {"email": buyer.email}


def test_an_oem_buyer_sees_the_gap_map_offline(server, world):
    with offline_page() as page:
        page.call("Page.navigate", {"url": f"{server.url}/insights"})
        page.wait_for("!document.getElementById('login').hidden", 60, "the login form")
        page.evaluate(
            f"document.getElementById('login-email').value = {json.dumps(world['email'])};"
            f"document.getElementById('login-password').value = {json.dumps(factories.PASSWORD)};"
            "document.querySelector('#login-form button').click(); true"
        )
        rendered = page.wait_for(f"{MARKERS_IN_SVG} !== null && {MARKERS_IN_SVG} + 1", 90, "map")
        assert rendered - 1 == 3  # the three suppliers within the default 100 km
        assert page.evaluate("document.getElementById('map').dataset.markers") == "3"
        tiers = page.evaluate(
            "Array.from(document.querySelector('#map object').contentDocument"
            ".querySelectorAll('.supplier-marker')).map(g => g.dataset.tier).sort().join(',')"
        )
        assert tiers == "1,2,3"
        rows = page.evaluate("document.querySelectorAll('#gap-table tbody tr').length")
        assert rows > 3
        flags = page.evaluate(
            "Array.from(document.querySelectorAll('#gap-table tbody tr'))"
            ".filter(r => r.cells[0].textContent === 'chassis.suspension')"
            ".map(r => r.cells[8].textContent).join()"
        )
        assert flags == "缺口"  # its only supplier is 150 km away
        assert "供应商 3 家" in page.evaluate("document.getElementById('status').textContent")
        page.wait_for(CHARTS_SETTLED, 60, "the KPI charts or their 暂无数据")
        if os.environ.get("INSIGHTS_SCREENSHOT"):  # a PNG of the page, for the README
            page.call("Emulation.setDeviceMetricsOverride",
                      {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
            shot = page.call("Page.captureScreenshot", {"format": "png"})
            with open(os.environ["INSIGHTS_SCREENSHOT"], "wb") as png:
                png.write(base64.b64decode(shot["data"]))
        messages = page.messages()
        requested = page.requested_urls()
    assert not [m for m in messages if "Content Security Policy" in m], messages
    assert not [m for m in messages if m.startswith("exception")], messages
    assert not [m for m in messages if "/error" in m.split(":")[0]], messages
    outside = [url for url in requested if not url.startswith((server.url, "data:"))]
    assert not outside, outside


def test_the_docs_link_to_the_insights_page(client):
    tags = {tag["name"]: tag for tag in client.get("/openapi.json").get_json()["tags"]}
    assert "(/insights)" in tags["gaps"]["description"]  # Swagger UI shows it on /docs
    page = client.get("/insights")
    assert page.status_code == 200
    assert 'lang="zh-CN"' in page.get_data(as_text=True)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert client.get("/insights/insights.js").mimetype == "text/javascript"
