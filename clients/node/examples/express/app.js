// A complete Express app on tessera sessions: sign in, see the session,
// rotate it, count (atomically), sign out.
//
//   tessera serve --listen 127.0.0.1:8080 &          # the session service
//   export TESSERA_API_KEY=$(tessera api-key create example)
//   npm run example                                   # http://127.0.0.1:3000
//
// Environment: TESSERA_URL (default http://127.0.0.1:8080), TESSERA_API_KEY,
// PORT (default 3000).
import { timingSafeEqual } from "node:crypto";
import { fileURLToPath } from "node:url";

import express from "express";

import { errorHandler, requireUser, tessera } from "../../dist/index.js";

// Replace with your user database and a password hash (argon2id, bcrypt).
const USERS = new Map([["alice", "correct horse battery staple"]]);

function passwordMatches(user, password) {
  const expected = Buffer.from(USERS.get(user) ?? "");
  const given = Buffer.from(String(password ?? ""));
  // Compare in constant time; a missing user still costs a comparison.
  return given.length === expected.length && timingSafeEqual(given, expected) && USERS.has(user);
}

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

/** The app, for tests and for `node app.js`. */
export function createApp({ url, apiKey, log }) {
  const sessions = tessera({
    url,
    apiKey,
    // The expiry poll of the page does not count as activity.
    statusQuery: (req) => req.method === "GET" && req.url === "/session/status",
    ...(log ? { log } : {}),
  });
  const app = express();
  app.disable("x-powered-by");
  app.use(sessions); // every route below sees req.session; unsafe requests are CSRF-checked
  app.use(express.urlencoded({ extended: false }));
  app.use(express.json());

  app.get("/", (req, res) => {
    const s = req.session;
    const csrf = escape(s.csrfToken() ?? "");
    res.type("html").send(
      s.user
        ? `<h1>Signed in as ${escape(s.user)}</h1>
<p>Session ${escape(s.handle)} expires at ${escape(s.expiresAt.toISOString())}; counter ${escape(s.get("counter") ?? 0)}.</p>
<form method="post" action="/counter"><input type="hidden" name="csrf_token" value="${csrf}"><button>Count</button></form>
<form method="post" action="/rotate"><input type="hidden" name="csrf_token" value="${csrf}"><button>Rotate token</button></form>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="${csrf}"><button>Sign out</button></form>`
        : `<h1>Sign in</h1>${s.reason !== "missing" ? `<p>Your session ended (${escape(s.reason)}).</p>` : ""}
<form method="post" action="/login">
<input name="username" autocomplete="username"> <input name="password" type="password" autocomplete="current-password"> <label><input type="checkbox" name="remember"> Keep me signed in</label>
<button>Sign in</button></form>`,
    );
  });

  // The sign-in form is protected against login CSRF by the origin check
  // tessera runs on every unsafe request.
  app.post("/login", async (req, res) => {
    const { username, password, remember } = req.body ?? {};
    if (typeof username !== "string" || !passwordMatches(username, password)) {
      res.status(401).json({ error: "invalid_credentials" });
      return;
    }
    // New token; the old one is dead. "Keep me signed in" (a checkbox
    // sends "on") asks for tessera's longer remember lifetime.
    await req.session.login(username, { remember: remember === true || remember === "on" });
    if (req.accepts(["html", "json"]) === "json") {
      res.json({ user: req.session.user, csrf_token: req.session.csrfToken() });
    } else {
      res.redirect(303, "/");
    }
  });

  app.get("/me", requireUser(), (req, res) => {
    const s = req.session;
    res.json({
      user: s.user,
      handle: s.handle,
      csrf_token: s.csrfToken(),
      expires_at: s.expiresAt,
      idle_expires_at: s.idleExpiresAt,
      absolute_expires_at: s.absoluteExpiresAt,
      data: s.data,
    });
  });

  // For a page that warns before its session expires: polling this does
  // not move the idle deadline.
  app.get("/session/status", requireUser(), (req, res) => {
    res.json({ idle_expires_at: req.session.idleExpiresAt, absolute_expires_at: req.session.absoluteExpiresAt });
  });

  app.post("/counter", requireUser(), async (req, res) => {
    const n = await req.session.update("counter", (n) => (n ?? 0) + 1);
    if (req.accepts(["html", "json"]) === "json") res.json({ counter: n });
    else res.redirect(303, "/");
  });

  app.post("/rotate", requireUser(), async (req, res) => {
    await req.session.rotate();
    if (req.accepts(["html", "json"]) === "json") res.json({ csrf_token: req.session.csrfToken() });
    else res.redirect(303, "/");
  });

  app.post("/logout", async (req, res) => {
    const ended = await req.session.logout();
    if (req.accepts(["html", "json"]) === "json") res.json({ ended });
    else res.redirect(303, "/");
  });

  app.use(errorHandler()); // tessera errors: 503 unavailable, 401 session gone, 4xx bad input
  return { app, sessions };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const apiKey = process.env.TESSERA_API_KEY;
  if (!apiKey) {
    console.error("set TESSERA_API_KEY (tessera api-key create example)");
    process.exit(1);
  }
  const { app } = createApp({ url: process.env.TESSERA_URL ?? "http://127.0.0.1:8080", apiKey });
  const port = Number(process.env.PORT ?? 3000);
  app.listen(port, "127.0.0.1", () => console.log(`example on http://127.0.0.1:${port}`));
}
