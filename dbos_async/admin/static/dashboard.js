// dbos_async dashboard: live refresh by server-sent events, and the action buttons.
// Plain JavaScript, no build step, nothing loaded from elsewhere.
(function () {
  "use strict";
  var base = document.body.getAttribute("data-base") || "";
  var content = document.getElementById("content");
  var live = document.getElementById("live");
  var refreshing = false;
  var again = false;

  function setLive(text, ok) {
    live.textContent = text;
    live.className = "live " + (ok ? "on" : "off");
  }

  // Reload what the page shows (only its <main>), keeping inputs the user is typing in.
  function refresh() {
    if (refreshing) { again = true; return; }
    var active = document.activeElement;
    if (active && active.tagName === "INPUT" && content.contains(active)) { return; }
    refreshing = true;
    fetch(window.location.href, { headers: { "X-Dashboard-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          content.innerHTML = html;
          document.body.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () {})
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  function connect() {
    if (!window.EventSource) { setLive("no live updates", false); return; }
    var source = new EventSource(base + "/api/events");
    source.addEventListener("ready", function () { setLive("live", true); });
    source.addEventListener("change", refresh);
    source.onerror = function () { setLive("reconnecting…", false); };
  }

  function post(path, body) {
    return fetch(base + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : ""
    }).then(function (r) {
      if (!r.ok) {
        return r.text().then(function (t) { throw new Error(r.status + " " + t); });
      }
      return r.status === 204 ? null : r.json();
    });
  }

  content.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    var action = button.getAttribute("data-action");
    var id = button.getAttribute("data-workflow");
    var path = "/workflows/" + encodeURIComponent(id) + "/" + action;
    var body = null;
    var question = action.charAt(0).toUpperCase() + action.slice(1) + " workflow " + id + "?";
    if (action === "fork") {
      var input = content.querySelector('input.fork-step[data-workflow="' + CSS.escape(id) + '"]');
      var step = parseInt(input ? input.value : "1", 10) || 1;
      body = { start_step: step };
      question = "Fork workflow " + id + " from step " + step + "?";
    }
    if (!window.confirm(question)) { return; }
    button.disabled = true;
    post(path, body).then(function (result) {
      if (result && result.workflow_id) {
        window.location.href = base + "/workflow/" + encodeURIComponent(result.workflow_id);
      } else {
        refresh();
      }
    }).catch(function (error) {
      button.disabled = false;
      window.alert(action + " failed: " + error.message);
    });
  });

  connect();
})();
