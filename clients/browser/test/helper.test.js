// Tests of the browser helper in Node (>= 18: fetch, Headers and
// BroadcastChannel are built in; Web Locks are faked where a test needs them).
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const TesseraBrowser = require("../tessera-browser.js");

// A fake server: records requests, answers from `routes`.
function fakeFetch(routes) {
  const calls = [];
  globalThis.fetch = async (url, init = {}) => {
    const headers = new Headers(init.headers || {});
    calls.push({ url: String(url), method: init.method || "GET", headers, credentials: init.credentials });
    const route = routes[String(url)] || { status: 404, body: {} };
    const r = typeof route === "function" ? route() : route;
    return new Response(JSON.stringify(r.body), { status: r.status, headers: { "Content-Type": "application/json" } });
  };
  return calls;
}

const open = [];
test.afterEach(() => { while (open.length) { open.pop().close(); } });

function tab(extra) {
  return remember(TesseraBrowser.create(Object.assign({
    autoStart: false,
    csrfToken: "csrf-1",
    serverNow: Date.now(),
    idleExpiresAt: Date.now() + 30 * 60 * 1000,
    absoluteExpiresAt: Date.now() + 12 * 3600 * 1000,
    onSignedOut: () => {}
  }, extra || {})));
}

function remember(s) { open.push(s); return s; }

const until = async (cond, what) => {
  for (let i = 0; i < 200; i++) {
    if (cond()) { return; }
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail("timed out waiting for " + what);
};

test("fetch adds the CSRF header on unsafe methods only, with same-origin credentials", async () => {
  const calls = fakeFetch({ "/api/x": { status: 200, body: {} } });
  const s = tab();
  await s.fetch("/api/x", { method: "post", body: "{}" });
  await s.fetch("/api/x");
  await s.fetch("/api/x", { method: "DELETE", headers: { "X-CSRF-Token": "own" } });
  assert.equal(calls[0].headers.get("X-CSRF-Token"), "csrf-1");
  assert.equal(calls[0].credentials, "same-origin");
  assert.equal(calls[1].headers.get("X-CSRF-Token"), null);
  assert.equal(calls[2].headers.get("X-CSRF-Token"), "own");
  s.stop();
});

test("a keepalive in one tab moves the deadlines in every tab", async () => {
  const idle = "2030-01-01T00:30:00Z";
  fakeFetch({ "/session/keepalive": { status: 200, body: { idle_expires_at: idle, absolute_expires_at: "2030-01-01T12:00:00Z" } } });
  const a = tab();
  const seen = [];
  const b = tab({ onChange: (c) => seen.push(c) });
  await a.keepalive();
  assert.equal(a.idleExpiresAt, Date.parse(idle));
  await until(() => b.idleExpiresAt === Date.parse(idle), "tab b to hear the new deadline");
  assert.equal(seen.at(-1).fromOtherTab, true);
  a.stop(); b.stop();
});

test("a sign-out in one tab makes the others ask the server, which says why", async () => {
  const calls = fakeFetch({
    "/logout": { status: 200, body: {} },
    "/session": { status: 401, body: { error: "unauthenticated", reason: "missing" } }
  });
  let reasonA = null, reasonB = null;
  const a = tab({ onSignedOut: (r) => { reasonA = r; } });
  const b = tab({ onSignedOut: (r) => { reasonB = r; } });
  await a.signOut();
  assert.equal(reasonA, "signed_out");
  assert.equal(calls[0].headers.get("X-CSRF-Token"), "csrf-1");
  await until(() => reasonB !== null, "tab b to learn it was signed out");
  // The server says only "missing" (the cookie is gone): the tab says why.
  assert.equal(reasonB, "signed_out");
  assert.ok(calls.some((c) => c.url === "/session" && c.method === "GET"), "b asked GET /session");
});

test("a tab that finds the keepalive lock taken sends no keepalive", async () => {
  const calls = fakeFetch({ "/session/keepalive": { status: 200, body: {} } });
  const held = new Set();
  const locks = {
    request: async (name, opts, fn) => {
      if (held.has(name)) { return fn(null); }
      held.add(name);
      try { return await fn({ name }); } finally { held.delete(name); }
    }
  };
  Object.defineProperty(globalThis, "navigator", { value: { locks }, configurable: true });
  try {
    const a = tab(), b = tab();
    const first = a.keepalive();
    const second = b.keepalive();
    await Promise.all([first, second]);
    assert.equal(calls.filter((c) => c.url === "/session/keepalive").length, 1);
    a.stop(); b.stop();
  } finally {
    delete globalThis.navigator;
  }
});

test("warnings come before the idle and the absolute deadline", () => {
  const now = Date.now();
  const idleSoon = tab({ idleExpiresAt: now + 60 * 1000 });
  assert.equal(idleSoon.warning().kind, "idle");
  const fine = tab();
  assert.equal(fine.warning().kind, null);
  const absoluteSoon = tab({ absoluteExpiresAt: now + 4 * 60 * 1000 });
  assert.equal(absoluteSoon.warning().kind, "absolute");
  // A client clock an hour behind the server's: the deadline is still near.
  const skewed = tab({ serverNow: now + 3600 * 1000, idleExpiresAt: now + 3600 * 1000 + 60 * 1000 });
  assert.equal(skewed.warning().kind, "idle");
});

test("a page without a session can tell every tab about a sign-out", async () => {
  const calls = fakeFetch({ "/session": { status: 401, body: { error: "unauthenticated", reason: "missing" } } });
  let reason = null;
  tab({ onSignedOut: (r) => { reason = r; } });
  TesseraBrowser.announceSignOut();
  await until(() => reason !== null, "the tab to follow the sign-out");
  assert.equal(reason, "signed_out");
  assert.equal(calls.filter((c) => c.url === "/session").length, 1);
});
