// tessera site script: times for people, the sign-out dialog, and the home
// page's expiry warnings. No framework, no inline script (the CSP forbids
// it). Every page works without this file: it only enhances.
//
// - Times: every <time datetime data-format> is rewritten in the reader's
//   language and time zone ("2 minutes ago", "in 25 minutes", or the local
//   date and time), with the exact local time in its title. Relative times
//   are measured against the server's clock (main[data-now]), so a skewed
//   client clock does not make "in 5 minutes" wrong.
// - Device list: "Sign out" links open one <dialog> asking for the password
//   instead of loading the confirmation page.
// - Home page: the page knows its deadlines (data attributes, in server
//   milliseconds). It warns before the idle deadline and offers "Stay
//   signed in" (POST /session/keepalive), warns before the absolute
//   deadline, and when a deadline passes asks GET /session - a status query
//   that does not count as activity - and moves to the sign-in page, which
//   says why.
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

var tessera = (function () {
  var main = document.querySelector("main");
  var serverNow = main && main.dataset.now ? Number(main.dataset.now) : NaN;
  // Server time minus client time at load.
  var skew = isNaN(serverNow) ? 0 : serverNow - Date.now();

  function now() { return Date.now() + skew; }

  var exact = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });
  var local = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  // The largest unit that keeps the number readable.
  function phrase(ms) {
    var s = Math.round(ms / 1000);
    var a = Math.abs(s);
    if (a < 45) { return relative.format(0, "second"); }
    if (a < 60 * 60) { return relative.format(Math.round(s / 60), "minute"); }
    if (a < 24 * 60 * 60) { return relative.format(Math.round(s / 3600), "hour"); }
    if (a < 30 * 24 * 60 * 60) { return relative.format(Math.round(s / 86400), "day"); }
    return relative.format(Math.round(s / (30 * 86400)), "month");
  }

  function formatTime(el) {
    var at = Date.parse(el.getAttribute("datetime"));
    if (isNaN(at)) { return; }
    el.title = exact.format(at);
    if (el.dataset.format === "relative") {
      el.textContent = phrase(at - now());
    } else {
      el.textContent = local.format(at);
    }
  }

  function formatTimes() {
    var all = document.querySelectorAll("time[datetime][data-format]");
    for (var i = 0; i < all.length; i++) { formatTime(all[i]); }
  }

  // Moves a <time> to another instant (RFC 3339 text) and rephrases it.
  function setTime(id, rfc3339) {
    var el = document.getElementById(id);
    if (!el || !rfc3339) { return; }
    el.setAttribute("datetime", rfc3339);
    formatTime(el);
  }

  formatTimes();
  setInterval(formatTimes, 15 * 1000);

  return { now: now, setTime: setTime, formatTimes: formatTimes };
}());

// The device list: one password dialog for every "Sign out".
(function () {
  var dialog = document.getElementById("confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") { return; }
  var form = document.getElementById("dialog-form");
  var what = document.getElementById("dialog-what");
  var password = document.getElementById("dialog-password");
  var cancel = document.getElementById("dialog-cancel");

  document.addEventListener("click", function (ev) {
    var link = ev.target.closest ? ev.target.closest("a.revoke[data-action]") : null;
    if (!link) { return; }
    ev.preventDefault();
    form.setAttribute("action", link.dataset.action);
    what.textContent = link.dataset.what;
    password.value = "";
    dialog.showModal();
    password.focus();
  });

  cancel.addEventListener("click", function (ev) {
    ev.preventDefault();
    dialog.close();
  });
}());

// The session on every signed-in page, through the browser helper
// (/static/tessera-browser.js, the @tessera/browser package): sign-out in
// every tab, one keepalive across tabs, and on the home page the expiry
// warnings and "Stay signed in".
(function () {
  var main = document.querySelector("main");
  if (!main || !main.dataset.now || typeof TesseraBrowser === "undefined") { return; }
  var el = document.getElementById("session");
  var idleWarning = document.getElementById("idle-warning");
  var absoluteWarning = document.getElementById("absolute-warning");
  var stayForm = document.getElementById("stay-form");
  var warn = el ? Number(el.dataset.warn) : 2 * 60 * 1000;

  var session = TesseraBrowser.create({
    statusUrl: "/session",
    keepaliveUrl: "/session/keepalive",
    logoutUrl: "/logout",
    loginUrl: "/login",
    serverNow: Number(main.dataset.now),
    csrfToken: el ? el.dataset.csrf : null,
    idleExpiresAt: el ? Number(el.dataset.idle) : null,
    absoluteExpiresAt: el ? Number(el.dataset.absolute) : null,
    warnBefore: warn,
    warnBeforeAbsolute: Math.max(warn, 5 * 60 * 1000),
    onChange: function (c) {
      tessera.setTime("idle-at", new Date(c.idleExpiresAt).toISOString().replace(/\.\d{3}Z$/, "Z"));
      tessera.setTime("absolute-at", new Date(c.absoluteExpiresAt).toISOString().replace(/\.\d{3}Z$/, "Z"));
    },
    onWarning: function (w) {
      if (idleWarning) { idleWarning.hidden = w.kind !== "idle"; }
      if (absoluteWarning) { absoluteWarning.hidden = w.kind !== "absolute"; }
    }
  });

  if (stayForm) {
    stayForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      Promise.resolve(session.keepalive()).catch(function () { session.refresh(); });
    });
  }

}());

// The page after a sign-out tells every other open tab, which asks the
// server and follows to the sign-in page (announcing on submit would race
// the sign-out: those tabs would still find the session alive).
(function () {
  if (location.pathname === "/login" && /[?&]reason=signed_out(&|$)/.test(location.search) &&
      typeof TesseraBrowser !== "undefined") {
    TesseraBrowser.announceSignOut();
  }
}());
