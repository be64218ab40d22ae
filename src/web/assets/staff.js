// The staff console's page: calls the JSON API (/staff/api/v1/) with the page's CSRF token
// and shows what it answers. The role only decides what is offered; the server checks every
// call. Texts come from the page (its language), keyed by the API's stable error codes.
// No libraries; served under CSP 'self'.
(function () {
  "use strict";
  var API = "/staff/api/v1/";
  var csrf = (document.querySelector('meta[name="certgate-csrf"]') || {}).content || "";
  var data = JSON.parse(document.getElementById("staff-texts").dataset.json);
  var T = data.t;
  var E = data.e;
  var lang = data.lang;
  var me = { name: "", role: "" };
  var statusEl = document.getElementById("staff-status");
  var errorEl = document.getElementById("staff-error");
  var REASONS = ["unspecified", "keyCompromise", "affiliationChanged", "superseded",
    "cessationOfOperation", "privilegeWithdrawn"];

  function $(id) { return document.getElementById(id); }

  function can(what) {
    if (what === "change") { return me.role === "operator" || me.role === "supervisor"; }
    if (what === "audit") { return me.role === "supervisor" || me.role === "auditor"; }
    if (what === "decide") { return me.role === "supervisor"; }
    return false;
  }

  // A date from the API (Unix seconds) in the institution's time zone, zone shown, written
  // as the server writes dates: 2026年6月15日 09:00（JST） / 2026-06-15 09:00 JST.
  function when(at) {
    if (at === null || at === undefined) { return ""; }
    var d = new Date(at * 1000);
    try {
      var p = {};
      new Intl.DateTimeFormat("en-US", {
        timeZone: data.tz, year: "numeric", month: "numeric", day: "numeric",
        hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      }).formatToParts(d).forEach(function (x) { p[x.type] = x.value; });
      // Japanese names the zone by its letters (JST) where English gives an offset.
      var zone = "";
      new Intl.DateTimeFormat("ja-JP", { timeZone: data.tz, timeZoneName: "short" })
        .formatToParts(d).forEach(function (x) { if (x.type === "timeZoneName") { zone = x.value; } });
      zone = zone.replace(/^GMT(?=[+-])/, "UTC");
      var two = function (n) { return ("0" + n).slice(-2); };
      if (lang === "ja") {
        return p.year + "年" + Number(p.month) + "月" + Number(p.day) + "日 " + p.hour + ":" + p.minute + "（" + zone + "）";
      }
      return p.year + "-" + two(p.month) + "-" + two(p.day) + " " + p.hour + ":" + p.minute + " " + zone;
    } catch (e) {
      return d.toISOString();
    }
  }

  function ApiError(code) {
    this.code = code;
    this.message = E[code] || (E.generic + " (" + code + ")");
  }

  function api(method, path, body) {
    return fetch(API + path, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: method === "GET" ? undefined : JSON.stringify(body || {}),
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw new ApiError(j.error || (r.status === 429 ? "rate_limited" : "generic")); }
        j.httpStatus = r.status;
        return j;
      });
    }, function () {
      throw new ApiError("network");
    });
  }

  function say(text) {
    errorEl.hidden = true;
    statusEl.textContent = text;
  }

  function fail(e) {
    errorEl.textContent = e.message || E.generic;
    errorEl.dataset.code = e.code || "generic";
    errorEl.hidden = false;
    statusEl.textContent = "";
  }

  function el(tag, text, cls) {
    var n = document.createElement(tag);
    if (text !== undefined && text !== null) { n.textContent = text; }
    if (cls) { n.className = cls; }
    return n;
  }

  function cell(row, text) {
    var td = el("td", text);
    row.appendChild(td);
    return td;
  }

  function button(text, cls, onClick) {
    var b = el("button", text, cls);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function q(params) {
    var parts = [];
    Object.keys(params).forEach(function (k) {
      if (params[k] !== "" && params[k] !== null && params[k] !== undefined) {
        parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(params[k]));
      }
    });
    return parts.length ? "?" + parts.join("&") : "";
  }

  function actionText(action) {
    return T["act_" + String(action).replace(/\./g, "_")] || action;
  }

  // The issuance code: shown once, here and on the hand-over sheet; "close" forgets it.
  function showCode(login, code, expiresAt) {
    $("staff-code-login").textContent = login;
    $("staff-code-value").textContent = code;
    $("staff-code-expires").textContent = when(expiresAt);
    $("handover-login").textContent = login;
    $("handover-code").textContent = code;
    $("handover-expires").textContent = when(expiresAt);
    $("staff-code").hidden = false;
    $("staff-code").scrollIntoView();
  }

  function forgetCode() {
    ["staff-code-login", "staff-code-value", "staff-code-expires", "handover-login",
      "handover-code", "handover-expires"].forEach(function (id) { $(id).textContent = ""; });
    $("staff-code").hidden = true;
  }

  // What a change answered: done (with a code, perhaps) or a four-eyes request.
  function changed(answer, login) {
    if (answer.httpStatus === 202) {
      say(T.pending + " " + answer.request);
      statusEl.dataset.request = answer.request;
      loadRequests();
      return false;
    }
    if (answer.code) { showCode(login, answer.code, answer.code_expires_at); }
    say(T.done);
    return true;
  }

  function change(path, body, login, confirmText) {
    if (confirmText && !window.confirm(confirmText)) { return Promise.resolve(); }
    return api("POST", path, body).then(function (a) {
      changed(a, login);
      return search();
    }).catch(fail);
  }

  // Search: a contract ID names its users; otherwise the text matches login IDs.
  var lastQuery = "";

  function search() {
    if (!lastQuery) { return Promise.resolve(); }
    var text = lastQuery;
    return Promise.all([
      api("GET", "users" + q({ contract: text })),
      api("GET", "users" + q({ q: text })),
    ]).then(function (lists) {
      var seen = {};
      var users = [];
      lists.forEach(function (l) {
        l.users.forEach(function (u) {
          if (!seen[u.login]) { seen[u.login] = true; users.push(u); }
        });
      });
      return Promise.all(users.map(function (u) {
        return api("GET", "certificates" + q({ login: u.login })).then(function (c) {
          u.certificates = c.certificates;
          return u;
        });
      }));
    }).then(renderUsers).catch(fail);
  }

  function certLine(c) {
    var li = el("li");
    li.dataset.serial = c.serial;
    li.dataset.status = c.status;
    var status = c.status === "current" && c.expired ? "expired" : c.status;
    li.appendChild(el("span", T["cert_" + status] || status, "cert-status"));
    li.appendChild(document.createTextNode(" " + T.until + " " + when(c.not_after) + " "));
    li.appendChild(el("code", c.serial, "serial"));
    if (c.status === "current" && can("change")) {
      var sel = el("select", null, "reason");
      sel.setAttribute("aria-label", T.reason);
      REASONS.forEach(function (r) {
        var o = el("option", T["reason_" + r] || r);
        o.value = r;
        sel.appendChild(o);
      });
      li.appendChild(sel);
      li.appendChild(button(T.revoke, "revoke", function () {
        change("certificates/" + encodeURIComponent(c.serial) + "/revoke", { reason: sel.value },
          c.login, T.confirm_revoke);
      }));
    }
    return li;
  }

  function renderUsers(users) {
    var table = $("staff-users");
    var tbody = table.querySelector("tbody");
    tbody.textContent = "";
    $("search-none").hidden = users.length > 0;
    table.hidden = users.length === 0;
    users.forEach(function (u) {
      var row = el("tr");
      row.dataset.login = u.login;
      cell(row, u.login);
      cell(row, u.contract);
      cell(row, T["user_" + u.role] || u.role);
      cell(row, u.enabled ? T.enabled : T.disabled);
      var certs = cell(row, "");
      if (u.certificates.length) {
        var ul = el("ul", null, "certs");
        u.certificates.forEach(function (c) { ul.appendChild(certLine(c)); });
        certs.appendChild(ul);
      } else {
        certs.textContent = T.cert_none;
      }
      var act = cell(row, "");
      if (can("change")) {
        var path = "users/" + encodeURIComponent(u.login);
        var current = u.certificates.some(function (c) { return c.status === "current" && !c.expired; });
        if (current) {
          act.appendChild(button(T.reissue, "reissue", function () {
            change(path + "/reissue", {}, u.login, T.confirm_reissue);
          }));
        } else {
          act.appendChild(button(T.authorize, "authorize", function () {
            change(path + "/authorize", {}, u.login);
          }));
        }
        // Suspends (or lifts) the login ID's certificates without revoking them.
        act.appendChild(button(u.enabled ? T.disable : T.enable, "switch secondary", function () {
          change(path + (u.enabled ? "/disable" : "/enable"), {}, u.login);
        }));
      }
      tbody.appendChild(row);
    });
  }

  $("staff-search").addEventListener("submit", function (ev) {
    ev.preventDefault();
    lastQuery = ev.target.q.value.trim();
    if (lastQuery) { say(T.loading); search().then(function () { if (statusEl.textContent === T.loading) { say(""); } }); }
  });

  // Register a contract, then its administrator; then show it, ready to authorize.
  $("staff-register").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    var contract = f.contract.value.trim();
    var login = f.login.value.trim();
    api("POST", "contracts", { id: contract, name: f.name.value.trim() }).then(function (a) {
      if (!changed(a, login)) { return null; }
      return api("POST", "users", {
        login: login, contract: contract, role: "admin", email: f.email.value.trim(),
      }).then(function (b) {
        if (!changed(b, login)) { return null; }
        f.reset();
        say(T.registered);
        $("search-q").value = contract;
        lastQuery = contract;
        return search();
      });
    }).catch(fail);
  });

  // Requests: the queue (pending, anyone's) and one's own recent requests with their state.
  function loadRequests() {
    return Promise.all([api("GET", "requests" + q({ state: "pending" })), api("GET", "requests")])
      .then(function (r) {
        renderQueue(r[0].requests);
        renderMine(r[1].requests.filter(function (x) { return x.maker === me.name; }));
      }).catch(fail);
  }

  function decide(r, verb, done) {
    api("POST", "requests/" + r.request + "/" + verb, {}).then(function (a) {
      if (a.code) { showCode(r.subject, a.code, a.code_expires_at); }
      say(done + " " + r.request);
      statusEl.dataset.request = r.request;
      loadRequests();
      if (lastQuery) { search(); }
    }).catch(fail);
  }

  function renderQueue(list) {
    var table = $("staff-requests");
    var tbody = table.querySelector("tbody");
    tbody.textContent = "";
    $("requests-none").hidden = list.length > 0;
    table.hidden = list.length === 0;
    list.forEach(function (r) {
      var row = el("tr");
      row.dataset.request = r.request;
      cell(row, String(r.request));
      cell(row, actionText(r.action));
      cell(row, r.subject);
      cell(row, r.maker);
      cell(row, when(r.expires_at));
      var act = cell(row, "");
      var own = r.maker === me.name;
      // A maker never decides their own request; only supervisors decide.
      if (can("decide") && !own) {
        act.appendChild(button(T.approve, "approve", function () { decide(r, "approve", T.approved); }));
        act.appendChild(button(T.reject, "reject secondary", function () { decide(r, "reject", T.rejected); }));
      }
      if (own) {
        act.appendChild(el("span", T.own, "own"));
        act.appendChild(button(T.withdraw, "withdraw secondary", function () { decide(r, "withdraw", T.withdrawn); }));
      }
      tbody.appendChild(row);
    });
  }

  function renderMine(list) {
    var table = $("staff-mine");
    var tbody = table.querySelector("tbody");
    tbody.textContent = "";
    $("mine-none").hidden = list.length > 0;
    table.hidden = list.length === 0;
    list.forEach(function (r) {
      var row = el("tr");
      row.dataset.request = r.request;
      row.dataset.state = r.state;
      cell(row, String(r.request));
      cell(row, actionText(r.action));
      cell(row, r.subject);
      cell(row, T["state_" + r.state] || r.state);
      cell(row, r.checker || "");
      tbody.appendChild(row);
    });
  }

  $("requests-refresh").addEventListener("click", function () { errorEl.hidden = true; loadRequests(); });

  // The audit log, newest first; "older" fetches the page before the last entry shown.
  var auditFilter = {};
  var auditBefore = null;

  function loadAudit(more) {
    var params = { actor: auditFilter.actor, action: auditFilter.action, subject: auditFilter.subject, limit: 50 };
    if (more) { params.before = auditBefore; }
    return api("GET", "audit" + q(params)).then(function (a) {
      var table = $("staff-audit-log");
      var tbody = table.querySelector("tbody");
      if (!more) { tbody.textContent = ""; }
      a.entries.forEach(function (e) {
        var row = el("tr");
        row.dataset.seq = e.seq;
        cell(row, String(e.seq));
        cell(row, when(e.at));
        cell(row, e.actor);
        cell(row, e.action);
        cell(row, e.subject);
        cell(row, e.outcome);
        tbody.appendChild(row);
      });
      var any = tbody.children.length > 0;
      table.hidden = !any;
      $("audit-none").hidden = any;
      auditBefore = a.next_before;
      $("audit-older").hidden = a.next_before === null || a.next_before === undefined;
    }).catch(fail);
  }

  $("staff-audit").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    auditFilter = { actor: f.actor.value.trim(), action: f.action.value.trim(), subject: f.subject.value.trim() };
    loadAudit(false);
  });
  $("audit-older").addEventListener("click", function () { loadAudit(true); });

  $("staff-print").addEventListener("click", function () { window.print(); });
  $("staff-code-close").addEventListener("click", forgetCode);

  api("GET", "me").then(function (m) {
    me = m;
    $("staff-name").textContent = m.name;
    $("staff-role").textContent = T["role_" + m.role] || m.role;
    $("staff-me").hidden = false;
    document.body.dataset.role = m.role;
    Array.prototype.forEach.call(document.querySelectorAll("[data-needs]"), function (n) {
      n.hidden = !can(n.dataset.needs);
    });
    var loads = [loadRequests()];
    if (can("audit")) { loads.push(loadAudit(false)); }
    return Promise.all(loads);
  }).then(function () {
    document.body.dataset.ready = "1";
  }).catch(fail);
})();
