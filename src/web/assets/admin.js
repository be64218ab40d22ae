// The contract administrator's page: lists the contract's login IDs and calls the JSON API
// (/api/v1/users...) with the page's CSRF token. No libraries; served under CSP 'self'.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="certgate-csrf"]') || {}).content || "";
  var texts = document.getElementById("admin-texts").dataset;
  var statusEl = document.getElementById("admin-status");
  var errorEl = document.getElementById("admin-error");
  var codeBox = document.getElementById("admin-code");
  var tbody = document.querySelector("#admin-users tbody");
  var lang = texts.lang || document.documentElement.lang || "ja";

  function api(method, path, body) {
    return fetch(path, {
      method: method,
      credentials: "same-origin",
      // The server answers errors in the page's language.
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept-Language": lang },
      body: body ? JSON.stringify(body) : undefined,
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        // Every message shown is in the page's language: the server's (it follows
        // Accept-Language) or one of the page's own.
        if (!r.ok) { throw new Error(j.message || (r.status === 429 ? texts.busy : texts.failed)); }
        return j;
      });
    }, function () {
      throw new Error(texts.network);
    });
  }

  function showError(e) {
    errorEl.textContent = e.message;
    errorEl.hidden = false;
    statusEl.textContent = "";
  }

  function showCode(answer) {
    document.getElementById("admin-code-login").textContent = answer.login;
    document.getElementById("admin-code-value").textContent = answer.code;
    codeBox.hidden = false;
  }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function act(path, confirmText) {
    if (confirmText && !window.confirm(confirmText)) { return; }
    errorEl.hidden = true;
    api("POST", path).then(function (answer) { showCode(answer); load(); }).catch(showError);
  }

  function render(list) {
    tbody.textContent = "";
    list.users.forEach(function (u) {
      var row = document.createElement("tr");
      row.dataset.login = u.login;
      cell(row, u.login);
      cell(row, texts["role" + u.role.charAt(0).toUpperCase() + u.role.slice(1)] || u.role);
      cell(row, u.certificate
        // The server writes the date in the branding's time zone, zone included.
        ? texts.until + " " + (u.certificate.not_after_text || new Date(u.certificate.not_after * 1000).toISOString())
        : texts.none);
      var action = cell(row, "");
      if (u.role !== "admin") {
        var b = document.createElement("button");
        b.type = "button";
        var path = "/api/v1/users/" + encodeURIComponent(u.login);
        if (u.certificate) {
          b.textContent = texts.reissue;
          b.className = "reissue";
          b.addEventListener("click", function () { act(path + "/reissue", texts.confirm); });
        } else {
          b.textContent = texts.authorize;
          b.className = "authorize";
          b.addEventListener("click", function () { act(path + "/authorize"); });
        }
        action.appendChild(b);
      }
      tbody.appendChild(row);
    });
    statusEl.textContent = "";
  }

  function load() {
    statusEl.textContent = texts.loading;
    return api("GET", "/api/v1/users").then(render).catch(showError);
  }

  document.getElementById("admin-add").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var f = ev.target;
    errorEl.hidden = true;
    api("POST", "/api/v1/users", {
      login: f.login.value.trim(),
      role: f.role.value,
      email: f.email.value.trim(),
    }).then(function () { f.reset(); statusEl.textContent = texts.done; return load(); }).catch(showError);
  });

  load();
})();
