// tessera home page: expiry warnings without a framework.
//
// The page knows its deadlines (data attributes, in server milliseconds, with
// the server's "now" to correct for a skewed client clock). It warns before
// the idle deadline and offers "Stay signed in" (POST /session/keepalive),
// warns before the absolute deadline and offers re-authentication, and when a
// deadline passes asks GET /session - a status query that does not count as
// activity - and moves to the sign-in page, which says why.
"use strict";

// A page restored from the back/forward cache (Back after sign-out) would
// show authenticated content without asking the server: `Cache-Control:
// no-store` does not keep every browser from restoring it. Hide it at once
// and reload, so the server decides what to show.
window.addEventListener("pageshow", function (event) {
  if (event.persisted) {
    document.documentElement.style.visibility = "hidden";
    window.location.reload();
  }
});

(function () {
  var el = document.getElementById("session");
  if (!el) { return; }
  var skew = Number(el.dataset.now) - Date.now();
  var idle = Number(el.dataset.idle);
  var absolute = Number(el.dataset.absolute);
  var warn = Number(el.dataset.warn);
  var csrf = el.dataset.csrf;
  var idleWarning = document.getElementById("idle-warning");
  var absoluteWarning = document.getElementById("absolute-warning");
  var stayForm = document.getElementById("stay-form");
  var checking = false;

  function now() { return Date.now() + skew; }

  function show(node, text) {
    var t = document.getElementById(node);
    if (t) { t.textContent = text; }
  }

  function signedOut(reason) {
    var r = reason || "expired_idle";
    window.location.assign("/login?reason=" + encodeURIComponent(r));
  }

  function refresh() {
    if (checking) { return; }
    checking = true;
    fetch("/session", { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (res) {
        return res.json().then(function (body) { return { ok: res.ok, body: body }; });
      })
      .then(function (r) {
        if (!r.ok) { signedOut(r.body.reason); return; }
        idle = Date.parse(r.body.idle_expires_at);
        absolute = Date.parse(r.body.absolute_expires_at);
        csrf = r.body.csrf_token;
        show("idle-at", r.body.idle_expires_at);
      })
      .catch(function () { /* offline: try again on the next tick */ })
      .then(function () { checking = false; });
  }

  function tick() {
    var t = now();
    if (t >= absolute) { refresh(); return; }
    if (t >= idle) { refresh(); return; }
    idleWarning.hidden = idle - t > warn;
    absoluteWarning.hidden = absolute - t > Math.max(warn, 5 * 60 * 1000);
  }

  if (stayForm) {
    stayForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      fetch("/session/keepalive", {
        method: "POST",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
        credentials: "same-origin"
      })
        .then(function (res) {
          return res.json().then(function (body) { return { ok: res.ok, body: body }; });
        })
        .then(function (r) {
          if (!r.ok) { signedOut(r.body.reason); return; }
          idle = Date.parse(r.body.idle_expires_at);
          show("idle-at", r.body.idle_expires_at);
          idleWarning.hidden = true;
        })
        .catch(function () { refresh(); });
    });
  }

  // Learn about activity in other tabs now and then, without counting as
  // activity ourselves.
  setInterval(refresh, 60 * 1000);
  setInterval(tick, 1000);
  tick();
}());
