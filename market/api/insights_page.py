"""The insights page (``/insights``): one offline HTML page, in zh-CN, with the gap map, the gap
table and the KPI charts.

No CDN and no build step: the page is this module's HTML plus a small script and stylesheet
served from ``market/insights/assets``; it never runs inline code, so its CSP allows scripts and
styles from the app's own origin only (as ``/docs``), and the map (an SVG with inline styles
and no script) is embedded as an ``<object>`` document with its own policy.

The page itself holds no data and is public: it reads everything from the API with the
browser's session cookie (``POST /api/v1/auth/login``, which it offers as a form when nobody
is signed in). Whether someone is signed in, and as what, is written into the page, so the
script never has to probe the API and log a 401 to the console. KPI charts come from
``/api/v1/insights/kpis/chart.svg``; the script asks ``/openapi.json`` whether that route
exists and shows "暂无数据" when it does not or a chart cannot be drawn.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, send_from_directory, url_for
from flask_login import current_user
from markupsafe import escape

from market.clock import business_year
from market.permissions import public

ASSETS = Path(__file__).resolve().parent.parent / "insights" / "assets"
ASSET_MAX_AGE = 3600
INSIGHTS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'self'; frame-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>产业链洞察 — StrongChain Exchange</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}">
</head>
<body data-api="/api/v1" data-role="{role}" data-year="{year}">
<header>
<h1>产业链洞察 <small>补链 · 精准招商 · 近岸采购</small></h1>
<nav><a href="{docs}">API 文档</a></nav>
</header>
<main>
<section id="login" hidden>
<h2>登录</h2>
<form id="login-form">
<label>邮箱 <input id="login-email" type="email" autocomplete="username" required></label>
<label>密码 <input id="login-password" type="password" autocomplete="current-password" required>
</label>
<button type="submit">登录</button>
</form>
<p id="login-error" class="error" role="alert"></p>
</section>
<p id="denied" class="error" hidden>
供应商账户无权查看产业链缺口分析（仅限整车企业、监管机构与管理员）。</p>
<section id="gaps" hidden>
<h2>产业链缺口地图</h2>
<form id="controls">
<label>工厂 <select id="plant"></select></label>
<label>半径（公里） <input id="radius" type="number" min="1" max="500" step="1" value="100"></label>
<label>类别层级 <select id="depth"><option value="1">1 级</option>
<option value="2" selected>2 级</option><option value="3">3 级</option></select></label>
<label>要求证书 <input id="certs" type="text" placeholder="例如 iatf-16949"></label>
<button type="submit">显示</button>
<a id="csv" href="#" download>下载 CSV</a>
</form>
<p id="status" role="status"></p>
<div id="map" class="map"></div>
<p id="map-caption"></p>
<table id="gap-table">
<thead><tr><th>类别</th><th>名称</th><th>供应商</th><th>最近距离（公里）</th>
<th>一级</th><th>二级</th><th>三级</th><th>在途需求</th><th>状态</th></tr></thead>
<tbody></tbody>
</table>
</section>
<section id="kpis">
<h2>关键指标 <label>年份 <input id="year" type="number" min="2000" max="2100"></label></h2>
<div class="charts">
<figure class="chart" data-kind="near_shore"><figcaption>近岸采购比例</figcaption>
<div class="chart-body"></div></figure>
<figure class="chart" data-kind="vehicle_ratio"><figcaption>整零比（目标 1:0.9）</figcaption>
<div class="chart-body"></div></figure>
<figure class="chart" data-kind="chips"><figcaption>汽车芯片国产化率（目标 20%）</figcaption>
<div class="chart-body"></div></figure>
</div>
</section>
</main>
<script src="{script}"></script>
</body>
</html>
"""

blp = Blueprint("insights_page", __name__)


@blp.get("/insights")
@public
def insights() -> Response:
    """The insights page (its data comes from the API with the caller's session)."""
    role = current_user.role.value if current_user.is_authenticated else ""
    html = PAGE.format(
        css=url_for("insights_page.stylesheet"),
        script=url_for("insights_page.script"),
        docs=url_for("docs.swagger_ui"),
        role=escape(role),
        year=business_year(),
    )
    return Response(html, mimetype="text/html")


@blp.get("/insights/insights.js")
@public
def script() -> Response:
    """The page's script."""
    return _asset("insights.js", "text/javascript")


@blp.get("/insights/insights.css")
@public
def stylesheet() -> Response:
    """The page's stylesheet."""
    return _asset("insights.css", "text/css")


def _asset(filename: str, mimetype: str) -> Response:
    return send_from_directory(ASSETS, filename, mimetype=mimetype, max_age=ASSET_MAX_AGE)


@blp.after_request
def insights_policy(response: Response) -> Response:
    # Before market.http's headers (a blueprint's run first); it keeps this one.
    response.headers["Content-Security-Policy"] = INSIGHTS_CSP
    return response


def init_insights_page(app: Flask) -> None:
    app.register_blueprint(blp)
