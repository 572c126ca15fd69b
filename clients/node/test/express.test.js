// The Node client against a real `tessera serve`, through the example
// Express app, over real HTTP.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Browser, startApp, startTessera } from "./helpers.js";

const MINUTE = 60_000;

describe("signed in through tessera", () => {
  let tessera;
  let app;
  before(async () => {
    tessera = await startTessera();
    app = await startApp(tessera);
  });
  after(async () => {
    await app.close();
    await tessera.stop();
    tessera.cleanup();
  });

  test("sign-in installs a secure cookie and a new token; the old one is dead", async () => {
    const browser = new Browser(app);
    const anonymous = await browser.request("GET", "/me");
    assert.equal(anonymous.status, 401);
    assert.deepEqual(anonymous.json, { error: "unauthenticated", reason: "missing" });

    const first = await browser.login();
    const cookie = first.cookie;
    assert.equal(cookie.name, "__Host-session");
    assert.match(cookie.value, /^tss_/);
    for (const attribute of ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"]) {
      assert.ok(cookie.attributes.includes(attribute), `${attribute} in ${cookie.raw}`);
    }
    assert.ok(!cookie.attributes.some((a) => a.startsWith("Domain")), cookie.raw);
    const maxAge = Number(cookie.attributes.find((a) => a.startsWith("Max-Age=")).slice(8));
    assert.ok(maxAge > 0, cookie.raw);
    assert.equal(first.headers.get("cache-control"), "no-store");
    const oldCookie = browser.cookie;

    const me = await browser.request("GET", "/me");
    assert.equal(me.status, 200);
    assert.equal(me.json.user, "alice");
    assert.ok(Date.parse(me.json.expires_at) > Date.now());

    // Signing in again (say, as another account) rotates the token.
    const second = await browser.login();
    assert.notEqual(browser.cookie, oldCookie);
    assert.notEqual(second.cookie.value, cookie.value);
    const replay = new Browser(app);
    replay.cookie = oldCookie;
    const dead = await replay.request("GET", "/me");
    assert.equal(dead.status, 401);
    assert.equal(dead.json.reason, "missing");
    assert.equal(dead.cookie.value, "", "the dead cookie is cleared");
    assert.equal((await tessera.sessionsOf("alice")).length, 1);
  });

  test("wrong password: 401, no session", async () => {
    const browser = new Browser(app);
    const res = await browser.request("POST", "/login", { body: { username: "alice", password: "nope" } });
    assert.equal(res.status, 401);
    assert.equal(res.cookie, null);
  });

  test("CSRF: refused without a token, with another session's token, and cross-site", async () => {
    const browser = new Browser(app);
    await browser.login();
    const other = new Browser(app);
    await other.login();

    const refusals = [
      [{ csrf: false }, "csrf_token_missing"],
      [{ headers: { "x-csrf-token": other.csrf } }, "csrf_token_invalid"],
      [{ headers: { "sec-fetch-site": "cross-site", origin: "https://evil.test" } }, "cross_site"],
      [{ sameOrigin: false, headers: { origin: "https://evil.test" } }, "foreign_origin"],
    ];
    for (const [options, reason] of refusals) {
      const res = await browser.request("POST", "/counter", options);
      assert.equal(res.status, 403, reason);
      assert.deepEqual(res.json, { error: "csrf_rejected", reason });
    }
    // Nothing was counted.
    assert.equal((await browser.request("GET", "/me")).json.data.counter, undefined);

    // The right token, in the header or in a form field (no body parser
    // before the middleware), is accepted.
    assert.equal((await browser.request("POST", "/counter")).json.counter, 1);
    const form = await browser.request("POST", "/counter", {
      form: { csrf_token: browser.csrf },
      headers: { accept: "text/html" },
    });
    assert.equal(form.status, 303);
    assert.equal((await browser.request("GET", "/me")).json.data.counter, 2);
  });

  test("login CSRF: another site cannot post the sign-in form", async () => {
    const browser = new Browser(app);
    const res = await browser.request("POST", "/login", {
      body: { username: "alice", password: "correct horse battery staple" },
      headers: { "sec-fetch-site": "cross-site", origin: "https://evil.test" },
    });
    assert.equal(res.status, 403);
    assert.equal(res.json.reason, "cross_site");
    assert.equal(res.cookie, null);
  });

  test("100 concurrent updates of one session end at exactly 100", async () => {
    const browser = new Browser(app);
    await browser.login();
    const results = await Promise.all(Array.from({ length: 100 }, () => browser.request("POST", "/counter")));
    assert.deepEqual(
      results.map((r) => r.status),
      Array(100).fill(200),
    );
    const seen = results.map((r) => r.json.counter).sort((a, b) => a - b);
    assert.deepEqual(seen, Array.from({ length: 100 }, (_, i) => i + 1), "each update saw its own value");
    const me = await browser.request("GET", "/me");
    assert.equal(me.json.data.counter, 100);
  });

  test("concurrent updates from two app instances lose nothing (compare-and-set)", async () => {
    // Two middleware instances share nothing in memory, as two Node
    // processes behind a load balancer would not.
    const second = await startApp(tessera);
    try {
      const browser = new Browser(app);
      await browser.login();
      const elsewhere = new Browser(second);
      elsewhere.cookie = browser.cookie;
      elsewhere.csrf = browser.csrf;
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) => (i % 2 ? browser : elsewhere).request("POST", "/counter")),
      );
      assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
      assert.equal((await browser.request("GET", "/me")).json.data.counter, 100);
    } finally {
      await second.close();
    }
  });

  test("rotate: new token and CSRF token, same session", async () => {
    const browser = new Browser(app);
    await browser.login();
    await browser.request("POST", "/counter");
    const before = await browser.request("GET", "/me");
    const oldCookie = browser.cookie;
    const oldCsrf = browser.csrf;
    const rotated = await browser.request("POST", "/rotate");
    assert.equal(rotated.status, 200);
    assert.notEqual(browser.cookie, oldCookie);
    const after = await browser.request("GET", "/me");
    assert.equal(after.json.handle, before.json.handle);
    assert.equal(after.json.data.counter, 1);
    // The old CSRF token belonged to the old secret.
    assert.equal((await browser.request("POST", "/counter", { headers: { "x-csrf-token": oldCsrf } })).status, 403);
  });

  test("logout deletes the session and clears the cookie", async () => {
    const browser = new Browser(app);
    await browser.login();
    const oldCookie = browser.cookie;
    const out = await browser.request("POST", "/logout");
    assert.equal(out.status, 200);
    assert.deepEqual(out.json, { ended: true });
    assert.equal(out.cookie.value, "");
    assert.ok(out.cookie.attributes.includes("Max-Age=0"), out.cookie.raw);
    assert.equal(out.headers.get("clear-site-data"), '"cookies"');
    const replay = new Browser(app);
    replay.cookie = oldCookie;
    assert.equal((await replay.request("GET", "/me")).status, 401);
  });

  test("bad input gets a clear 4xx and changes nothing", async () => {
    // A junk cookie is no session, not an error.
    const junk = new Browser(app);
    junk.cookie = "__Host-session=tss_not-a-token";
    const res = await junk.request("GET", "/me");
    assert.equal(res.status, 401);
    assert.equal(res.json.reason, "missing");

    // A form body too large for the CSRF check: 413, nothing counted.
    const browser = new Browser(app);
    await browser.login();
    const tooBig = await browser.request("POST", "/counter", {
      form: { csrf_token: browser.csrf, pad: "x".repeat(70 * 1024) },
    });
    assert.equal(tooBig.status, 413);
    assert.equal((await browser.request("GET", "/me")).json.data.counter, undefined);

    // A user id tessera refuses: its 400 reaches the caller, no session.
    const { app: bare, sessions } = await import("./bad-input-app.js").then((m) => m.badInputApp(tessera));
    try {
      const server = await new Promise((r) => {
        const s = bare.listen(0, "127.0.0.1", () => r(s));
      });
      const url = `http://127.0.0.1:${server.address().port}`;
      const refused = await fetch(`${url}/login-as`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json", "sec-fetch-site": "same-origin" },
        body: JSON.stringify({ user: "a\nb" }),
      });
      assert.equal(refused.status, 400);
      assert.equal((await refused.json()).error, "invalid_user_id");
      assert.equal(refused.headers.getSetCookie().length, 0);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    } finally {
      sessions.close();
    }
  });

  test("concurrent requests are each decided on their own (batched checks)", async () => {
    const browser = new Browser(app);
    await browser.login();
    const stranger = new Browser(app);
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => {
        if (i % 5 === 1) return browser.request("POST", "/counter", { csrf: false }); // no token
        if (i % 5 === 2) return stranger.request("GET", "/me"); // no session
        return browser.request("GET", "/me");
      }),
    );
    answers.forEach((res, i) => {
      const expected = i % 5 === 1 ? 403 : i % 5 === 2 ? 401 : 200;
      assert.equal(res.status, expected, `request ${i}: ${res.text}`);
    });
  });

  test("connections to tessera are reused (keep-alive)", async () => {
    const browser = new Browser(app);
    await browser.login();
    const before = app.sessions.client.stats;
    for (let i = 0; i < 20; i++) await browser.request("GET", "/me");
    const after = app.sessions.client.stats;
    assert.equal(after.requests - before.requests, 20);
    assert.ok(after.connections - before.connections <= 1, JSON.stringify({ before, after }));
  });
});

describe("expiry", () => {
  let tessera;
  let app;
  before(async () => {
    tessera = await startTessera({
      TESSERA_IDLE_TIMEOUT: "10m",
      TESSERA_ABSOLUTE_TIMEOUT: "30m",
      TESSERA_TOUCH_STEP: "0s",
    });
    app = await startApp(tessera);
  });
  after(async () => {
    await app.close();
    await tessera.stop();
    tessera.cleanup();
  });

  test("idle and absolute expiry, with reasons", async () => {
    const idle = new Browser(app);
    await idle.login();
    const active = new Browser(app);
    await active.login();
    for (let i = 0; i < 3; i++) {
      tessera.advance(8 * MINUTE);
      assert.equal((await active.request("GET", "/me")).status, 200);
      // The activity is recorded right after the response: let it land
      // before the clock moves on.
      await app.sessions.settled();
    }
    const idled = await idle.request("GET", "/me");
    assert.equal(idled.status, 401);
    assert.equal(idled.json.reason, "expired_idle");
    assert.equal(idled.cookie.value, "", "cleared");

    tessera.advance(7 * MINUTE); // 31 minutes after sign-in
    const ended = await active.request("GET", "/me");
    assert.equal(ended.status, 401);
    assert.equal(ended.json.reason, "expired_absolute");
    // Polling the status route does not keep a session alive.
    const poller = new Browser(app);
    await poller.login();
    const first = (await poller.request("GET", "/session/status")).json.idle_expires_at;
    tessera.advance(5 * MINUTE);
    assert.equal((await poller.request("GET", "/session/status")).json.idle_expires_at, first);
    tessera.advance(6 * MINUTE);
    const polled = await poller.request("GET", "/session/status");
    assert.equal(polled.status, 401);
    assert.equal(polled.json.reason, "expired_idle");
    // The page can say so.
    assert.match((await idle.request("GET", "/", { headers: { accept: "text/html" } })).text, /Sign in/);
  });
});

describe("tessera down", () => {
  test("every request fails closed with 503, without secrets in the log", async () => {
    const tessera = await startTessera();
    const app = await startApp(tessera);
    try {
      const browser = new Browser(app);
      await browser.login();
      const token = browser.cookie;
      await tessera.stop();
      for (const [method, path] of [
        ["GET", "/me"],
        ["GET", "/"],
        ["POST", "/counter"],
        ["POST", "/login"],
      ]) {
        const res = await browser.request(method, path, { body: method === "POST" ? {} : undefined });
        assert.equal(res.status, 503, `${method} ${path}`);
        assert.deepEqual(res.json, { error: "unavailable", reason: "session_service" });
      }
      assert.ok(app.logs.length > 0);
      const logs = app.logs.join("\n");
      assert.match(logs, /tessera unavailable/);
      assert.ok(!logs.includes(tessera.apiKey), "no API key in the log");
      assert.ok(!logs.includes(token.split("=")[1]), "no session token in the log");
      assert.ok(!logs.includes("tss_"), "no token at all in the log");
    } finally {
      await app.close();
      tessera.cleanup();
    }
  });

  test("a wrong API key is a 503, not anonymous", async () => {
    const tessera = await startTessera();
    const app = await startApp({ ...tessera, apiKey: "tsk_wrong" });
    try {
      const res = await new Browser(app).request("GET", "/");
      assert.equal(res.status, 503);
      assert.match(app.logs.join("\n"), /API key was refused/);
      assert.ok(!app.logs.join("\n").includes("tsk_wrong"));
    } finally {
      await app.close();
      await tessera.stop();
      tessera.cleanup();
    }
  });
});

describe("keep me signed in, and what counts as activity", () => {
  let tessera;
  let app;
  before(async () => {
    tessera = await startTessera({
      TESSERA_IDLE_TIMEOUT: "10m",
      TESSERA_ABSOLUTE_TIMEOUT: "1h",
      TESSERA_TOUCH_STEP: "1m",
      TESSERA_REMEMBER_IDLE_TIMEOUT: "1d",
      TESSERA_REMEMBER_ABSOLUTE_TIMEOUT: "30d",
    });
    app = await startApp(tessera);
  });
  after(async () => {
    await app.close();
    await tessera.stop();
    tessera.cleanup();
  });

  const maxAgeOf = (cookie) => Number(cookie.attributes.find((a) => a.startsWith("Max-Age=")).slice(8));

  test("remember: the cookie's Max-Age follows the remember class", async () => {
    const plain = await new Browser(app).login("alice");
    assert.equal(maxAgeOf(plain.cookie), 3600, plain.cookie.raw);
    const browser = new Browser(app);
    const kept = await browser.login("alice", undefined, { remember: true });
    assert.equal(maxAgeOf(kept.cookie), 30 * 24 * 3600, kept.cookie.raw);
    // Past the default idle timeout, the remembered session lives on.
    tessera.advance(20 * MINUTE);
    const me = await browser.request("GET", "/me");
    assert.equal(me.status, 200, me.text);
    assert.ok(Date.parse(me.json.idle_expires_at) - Date.parse(me.json.absolute_expires_at) < 0);
  });

  test("remember on a server without the class: 400, the session left as it was", async () => {
    const bare = await startTessera();
    const other = await startApp(bare);
    try {
      const browser = new Browser(other);
      await browser.login("alice");
      const before = browser.cookie;
      const refused = await browser.request("POST", "/login", {
        body: { username: "alice", password: "correct horse battery staple", remember: true },
      });
      assert.equal(refused.status, 400, refused.text);
      assert.equal(refused.json.error, "remember_not_configured");
      assert.equal(refused.cookie, null, "no cookie change");
      browser.cookie = before;
      assert.equal((await browser.request("GET", "/me")).status, 200);
    } finally {
      await other.close();
      await bare.stop();
      bare.cleanup();
    }
  });

  test("a request the app answers with 4xx does not move the idle deadline; a 2xx does", async () => {
    const browser = new Browser(app);
    await browser.login("alice");
    const status = async () => (await browser.request("GET", "/session/status")).json.idle_expires_at;
    const first = await status();
    tessera.advance(5 * MINUTE);
    // Signed in, a wrong password: the app answers 401.
    const wrong = await browser.request("POST", "/login", { body: { username: "alice", password: "nope" } });
    assert.equal(wrong.status, 401);
    await app.sessions.settled();
    assert.equal(await status(), first, "a refused request is not activity");
    const me = await browser.request("GET", "/me");
    assert.equal(me.status, 200);
    await app.sessions.settled();
    assert.ok(Date.parse(await status()) > Date.parse(first), "a served request is activity");
  });

  test("a data write moves the idle deadline itself (no extra touch)", async () => {
    const browser = new Browser(app);
    await browser.login("alice");
    const first = (await browser.request("GET", "/session/status")).json.idle_expires_at;
    tessera.advance(5 * MINUTE);
    const before = app.sessions.client.stats.requests;
    const counted = await browser.request("POST", "/counter");
    assert.equal(counted.json.counter, 1);
    await app.sessions.settled();
    // The check, then the write carried by a check: two calls, no touch.
    assert.equal(app.sessions.client.stats.requests - before, 2);
    const after = (await browser.request("GET", "/session/status")).json.idle_expires_at;
    assert.ok(Date.parse(after) > Date.parse(first));
  });
});
