// The insights page's script (served by the app; the page runs no inline code).
// Reads the API with the browser's session cookie; writes text only with textContent.
(function () {
  "use strict";

  var body = document.body;
  var API = body.dataset.api;
  var READERS = ["buyer", "auditor", "admin"];
  var KPI_CHART = API + "/insights/kpis/chart.svg";

  function $(id) { return document.getElementById(id); }

  function say(text) { $("status").textContent = text; }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
  }

  function fetchJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (data) { return { status: response.status, data: data }; });
      });
  }

  // --- signing in --------------------------------------------------------------------------

  function showLogin() {
    $("login").hidden = false;
    $("login-form").addEventListener("submit", function (event) {
      event.preventDefault();
      $("login-error").textContent = "";
      fetch(API + "/auth/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ email: $("login-email").value, password: $("login-password").value })
      }).then(function (response) {
        if (response.ok) { window.location.reload(); return; }
        $("login-error").textContent = response.status === 429
          ? "尝试次数过多，请稍后再试。" : "邮箱或密码不正确。";
      }).catch(function () { $("login-error").textContent = "无法连接服务器。"; });
    });
  }

  // --- the gap map and table ----------------------------------------------------------------

  function query() {
    var params = new URLSearchParams();
    params.set("plant", $("plant").value);
    params.set("radius_km", $("radius").value || "100");
    params.set("depth", $("depth").value);
    var certs = $("certs").value.trim();
    if (certs) { params.set("certs", certs); }
    return params;
  }

  function fieldErrors(data) {
    var errors = (data && data.error && data.error.fields) || {};
    var parts = [];
    Object.keys(errors).forEach(function (name) {
      var value = errors[name];
      parts.push(name + "：" + (Array.isArray(value) ? value.join(" ") : JSON.stringify(value)));
    });
    return parts.join("；");
  }

  function fillTable(result) {
    var tbody = $("gap-table").querySelector("tbody");
    tbody.textContent = "";
    result.categories.forEach(function (item) {
      var row = document.createElement("tr");
      row.className = item.gap ? "gap" : (item.single_source ? "single" : "");
      cell(row, item.category);
      cell(row, item.name_zh);
      cell(row, String(item.suppliers), "num");
      cell(row, item.nearest_km === null ? "—" : item.nearest_km.toFixed(1), "num");
      cell(row, String(item.tier_mix["1"]), "num");
      cell(row, String(item.tier_mix["2"]), "num");
      cell(row, String(item.tier_mix["3"]), "num");
      cell(row, String(item.open_demands), "num");
      cell(row, item.gap ? "缺口" : (item.single_source ? "单一来源" : "正常"), "flag");
      tbody.appendChild(row);
    });
    var s = result.summary;
    say("半径 " + result.radius_km + " 公里内供应商 " + s.suppliers + " 家；" + s.categories +
        " 个类别中缺口 " + s.gaps + " 个、单一来源 " + s.single_source + " 个。");
  }

  function showMap(params, expected) {
    var holder = $("map");
    holder.textContent = "";
    holder.removeAttribute("data-markers");
    var object = document.createElement("object");
    object.type = "image/svg+xml";
    object.data = API + "/insights/gaps/map.svg?" + params.toString();
    object.addEventListener("load", function () {
      var svg = object.contentDocument;
      var markers = svg ? svg.querySelectorAll(".supplier-marker").length : 0;
      holder.dataset.markers = String(markers);
      $("map-caption").textContent = "地图显示供应商 " + markers + " 家" +
        (markers < expected ? "（最近的 " + markers + " 家）" : "") + "，按等级区分图形与颜色。";
    });
    holder.appendChild(object);
  }

  function showGaps(event) {
    if (event) { event.preventDefault(); }
    if (!$("plant").value) { say("没有可查看的工厂。"); return; }
    var params = query();
    say("加载中…");
    fetchJSON(API + "/insights/gaps?" + params.toString()).then(function (answer) {
      if (answer.status !== 200) {
        say("无法显示（" + answer.status + "）" + fieldErrors(answer.data));
        return;
      }
      fillTable(answer.data);
      showMap(params, answer.data.summary.suppliers);
      var csv = new URLSearchParams(params);
      csv.set("format", "csv");
      $("csv").href = API + "/insights/gaps?" + csv.toString();
    }).catch(function () { say("无法连接服务器。"); });
  }

  function loadPlants() {
    $("gaps").hidden = false;
    $("controls").addEventListener("submit", showGaps);
    fetchJSON(API + "/plants?per_page=100").then(function (answer) {
      var select = $("plant");
      (answer.data.items || []).forEach(function (plant) {
        var option = document.createElement("option");
        option.value = String(plant.id);
        option.textContent = plant.name + "（" + plant.city_code + "）";
        select.appendChild(option);
      });
      showGaps();
    }).catch(function () { say("无法加载工厂列表。"); });
  }

  // --- KPI charts ---------------------------------------------------------------------------

  function noData(figure) {
    var holder = figure.querySelector(".chart-body");
    holder.textContent = "";
    var p = document.createElement("p");
    p.className = "empty";
    p.textContent = "暂无数据";
    holder.appendChild(p);
  }

  function loadCharts(available) {
    var year = $("year").value;
    document.querySelectorAll(".chart").forEach(function (figure) {
      if (!available) { noData(figure); return; }
      var holder = figure.querySelector(".chart-body");
      holder.textContent = "";
      var img = document.createElement("img");
      img.alt = figure.querySelector("figcaption").textContent;
      img.addEventListener("error", function () { noData(figure); });
      img.src = KPI_CHART + "?kind=" + encodeURIComponent(figure.dataset.kind) +
        "&year=" + encodeURIComponent(year);
      holder.appendChild(img);
    });
  }

  function startCharts() {
    $("year").value = body.dataset.year;
    // Ask the API description first, so a server without the KPI charts causes no 404.
    fetch("/openapi.json", { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (spec) {
        var available = Boolean(spec.paths && spec.paths[KPI_CHART]);
        loadCharts(available && READERS.indexOf(body.dataset.role) >= 0);
        $("year").addEventListener("change", function () { loadCharts(available); });
      })
      .catch(function () { loadCharts(false); });
  }

  // --- start ------------------------------------------------------------------------------

  var role = body.dataset.role;
  if (!role) {
    showLogin();
  } else if (READERS.indexOf(role) < 0) {
    $("denied").hidden = false;
  } else {
    loadPlants();
  }
  startCharts();
}());
