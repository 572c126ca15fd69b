/*
 * @tessera/browser: the session helper for any page behind tessera.
 * No dependencies; a classic script (sets `TesseraBrowser`) or a CommonJS
 * module. tessera serves it at /static/tessera-browser.js.
 *
 *   var session = TesseraBrowser.create({
 *     csrfToken: "...",                       // or read from GET /session
 *     onWarning: function (w) { ... },        // w.kind: "idle" | "absolute" | null
 *   });
 *   session.keepalive();                      // "Stay signed in"
 *   session.fetch("/api/things", { method: "POST", body: ... });  // X-CSRF-Token added
 *
 * What it does:
 * - expiry warning: knows the idle and absolute deadlines (from the page or
 *   GET /session, a status query that does not count as activity) and calls
 *   onWarning ahead of them; when one passes it asks the server, and on 401
 *   calls onSignedOut (default: go to the sign-in page, which says why);
 * - keepalive: POST /session/keepalive, one tab at a time (Web Locks), the
 *   new deadlines sent to every tab (BroadcastChannel);
 * - sign-out in every tab: a sign-out in one tab tells the others, which
 *   ask the server (the message is a hint; the server decides);
 * - fetch with the CSRF header on unsafe methods, same-origin credentials.
 */
(function (root, factory) {
  "use strict";
  var api = factory(root);
  if (typeof module === "object" && module && module.exports) {
    module.exports = api;
  } else {
    root.TesseraBrowser = api;
  }
}(typeof globalThis !== "undefined" ? globalThis : self, function (root) {
  "use strict";

  var CHANNEL = "tessera-session";
  var LOCK = "tessera-keepalive";
  var SAFE = { GET: true, HEAD: true, OPTIONS: true };

  function defaults(options) {
    var o = {
      statusUrl: "/session",
      keepaliveUrl: "/session/keepalive",
      logoutUrl: "/logout",
      loginUrl: "/login",
      // Milliseconds before the idle deadline to warn.
      warnBefore: 2 * 60 * 1000,
      // Milliseconds before the absolute deadline to warn.
      warnBeforeAbsolute: 5 * 60 * 1000,
      // How often to learn about activity in other tabs and devices.
      pollInterval: 60 * 1000,
      csrfToken: null,
      // Server time (ms) when the page was rendered: corrects a skewed
      // client clock. Deadlines are server times (ms or RFC 3339).
      serverNow: null,
      idleExpiresAt: null,
      absoluteExpiresAt: null,
      onWarning: null,
      onChange: null,
      onSignedOut: null,
      // Start the timers at once (false for tests and manual control).
      autoStart: true
    };
    for (var k in options || {}) {
      if (Object.prototype.hasOwnProperty.call(options, k)) { o[k] = options[k]; }
    }
    return o;
  }

  function toMs(t) {
    if (t === null || t === undefined) { return NaN; }
    return typeof t === "number" ? t : Date.parse(t);
  }

  function create(options) {
    var o = defaults(options);
    var skew = o.serverNow === null ? 0 : toMs(o.serverNow) - Date.now();
    var state = {
      idle: toMs(o.idleExpiresAt),
      absolute: toMs(o.absoluteExpiresAt),
      csrf: o.csrfToken
    };
    var channel = typeof root.BroadcastChannel === "function" ? new root.BroadcastChannel(CHANNEL) : null;
    var timers = [];
    var checking = null;
    var ended = false;
    var lastWarning;
    var signOutHint = null;

    function now() { return Date.now() + skew; }

    function signedOut(reason) {
      if (ended) { return; }
      ended = true;
      stop();
      var r = reason || "missing";
      if (typeof o.onSignedOut === "function") {
        o.onSignedOut(r);
      } else if (root.location) {
        root.location.assign(o.loginUrl + "?reason=" + encodeURIComponent(r));
      }
    }

    function changed(fromOtherTab) {
      if (typeof o.onChange === "function") {
        o.onChange({ idleExpiresAt: state.idle, absoluteExpiresAt: state.absolute, fromOtherTab: !!fromOtherTab });
      }
      tick();
    }

    function update(body) {
      if (body.idle_expires_at) { state.idle = toMs(body.idle_expires_at); }
      if (body.absolute_expires_at) { state.absolute = toMs(body.absolute_expires_at); }
      if (body.csrf_token) { state.csrf = body.csrf_token; }
    }

    function json(res) {
      return res.json().then(function (body) { return { ok: res.ok, status: res.status, body: body }; },
        function () { return { ok: res.ok, status: res.status, body: {} }; });
    }

    // GET /session: not activity, so polling cannot keep a session alive.
    // `hint`: the reason to give when the server only says the session is
    // missing (another tab signed out: the cookie is gone).
    function refresh(hint) {
      if (hint) { signOutHint = hint; }
      if (checking) { return checking; }
      checking = root.fetch(o.statusUrl, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(json)
        .then(function (r) {
          if (r.status === 401) {
            signedOut(signOutHint && r.body.reason === "missing" ? signOutHint : r.body.reason);
            return null;
          }
          if (!r.ok) { return null; }
          update(r.body);
          changed(false);
          return r.body;
        })
        .catch(function () { return null; /* offline: next tick tries again */ })
        .then(function (v) { checking = null; return v; });
      return checking;
    }

    // One keepalive at a time across tabs: the tab holding the lock sends
    // it and broadcasts the new deadlines; a tab that finds the lock taken
    // gets them from that broadcast.
    function withLock(fn) {
      var locks = root.navigator && root.navigator.locks;
      if (!locks || typeof locks.request !== "function") { return fn(); }
      return locks.request(LOCK, { ifAvailable: true }, function (lock) {
        return lock ? fn() : null;
      });
    }

    function keepalive() {
      return withLock(function () {
        var headers = { "Accept": "application/json" };
        if (state.csrf) { headers["X-CSRF-Token"] = state.csrf; }
        return root.fetch(o.keepaliveUrl, { method: "POST", headers: headers, credentials: "same-origin" })
          .then(json)
          .then(function (r) {
            if (r.status === 401) { signedOut(r.body.reason); return null; }
            if (!r.ok) { return refresh(); }
            update(r.body);
            if (channel) {
              channel.postMessage({ type: "deadlines", idle: state.idle, absolute: state.absolute });
            }
            changed(false);
            return r.body;
          });
      });
    }

    // Tells the other tabs. Call it once the server has ended the session
    // (after the sign-out response, or on the page shown after it): tabs
    // told earlier would still find the session alive.
    function announceSignOut() {
      if (channel) { channel.postMessage({ type: "signed-out" }); }
    }

    function signOut() {
      var headers = { "Accept": "application/json" };
      if (state.csrf) { headers["X-CSRF-Token"] = state.csrf; }
      return root.fetch(o.logoutUrl, { method: "POST", headers: headers, credentials: "same-origin" })
        .then(function (res) {
          if (!res.ok && res.status !== 401) {
            throw new Error("sign-out refused with HTTP " + res.status);
          }
          announceSignOut();
          signedOut("signed_out");
        });
    }

    // fetch() with the CSRF header on unsafe methods and same-origin
    // credentials; a 401 ends the session here and in every tab.
    function csrfFetch(input, init) {
      var i = {};
      for (var k in init || {}) {
        if (Object.prototype.hasOwnProperty.call(init, k)) { i[k] = init[k]; }
      }
      var method = String(i.method || "GET").toUpperCase();
      var headers = new root.Headers(i.headers || {});
      if (!SAFE[method] && state.csrf && !headers.has("X-CSRF-Token")) {
        headers.set("X-CSRF-Token", state.csrf);
      }
      i.headers = headers;
      if (!i.credentials) { i.credentials = "same-origin"; }
      return root.fetch(input, i).then(function (res) {
        if (res.status === 401) { refresh(); }
        return res;
      });
    }

    function warning() {
      var t = now();
      if (!isNaN(state.absolute) && state.absolute - t <= o.warnBeforeAbsolute) {
        return { kind: "absolute", expiresAt: state.absolute, remaining: state.absolute - t };
      }
      if (!isNaN(state.idle) && state.idle - t <= o.warnBefore) {
        return { kind: "idle", expiresAt: state.idle, remaining: state.idle - t };
      }
      return { kind: null };
    }

    function tick() {
      if (ended) { return; }
      var t = now();
      if ((!isNaN(state.idle) && t >= state.idle) || (!isNaN(state.absolute) && t >= state.absolute)) {
        refresh();
        return;
      }
      var w = warning();
      if (typeof o.onWarning === "function" && (!lastWarning || w.kind !== lastWarning.kind || w.kind)) {
        o.onWarning(w);
      }
      lastWarning = w;
    }

    if (channel) {
      channel.onmessage = function (ev) {
        var m = ev.data || {};
        if (m.type === "signed-out") {
          // A hint: the server says whether this tab's session ended too.
          refresh("signed_out");
        } else if (m.type === "deadlines") {
          if (typeof m.idle === "number") { state.idle = m.idle; }
          if (typeof m.absolute === "number") { state.absolute = m.absolute; }
          changed(true);
        }
      };
    }

    function start() {
      if (timers.length) { return; }
      timers.push(setInterval(tick, 1000));
      timers.push(setInterval(function () { refresh(); }, o.pollInterval));
      if (isNaN(state.idle) || isNaN(state.absolute) || !state.csrf) { refresh(); } else { tick(); }
    }

    function stop() {
      while (timers.length) { clearInterval(timers.pop()); }
    }

    // Stops the timers and leaves the channel (a page being torn down, or
    // a test).
    function close() {
      stop();
      if (channel) { channel.close(); channel = null; }
    }

    if (o.autoStart) { start(); }

    return {
      now: now,
      refresh: refresh,
      keepalive: keepalive,
      signOut: signOut,
      announceSignOut: announceSignOut,
      fetch: csrfFetch,
      warning: warning,
      start: start,
      stop: stop,
      close: close,
      get csrfToken() { return state.csrf; },
      get idleExpiresAt() { return state.idle; },
      get absoluteExpiresAt() { return state.absolute; }
    };
  }

  // For a page without a session (the one shown after signing out):
  // tells every open tab that a sign-out happened.
  function announceSignOut() {
    if (typeof root.BroadcastChannel !== "function") { return; }
    var c = new root.BroadcastChannel(CHANNEL);
    c.postMessage({ type: "signed-out" });
    c.close();
  }

  return { create: create, announceSignOut: announceSignOut, CHANNEL: CHANNEL, LOCK: LOCK };
}));
