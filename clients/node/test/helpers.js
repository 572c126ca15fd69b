// Starts a real `tessera serve` (the binary in TESSERA_BIN, a debug build so
// that the session clock can be moved with TESSERA_TEST_CLOCK_FILE) and the
// example Express app in front of it, and talks HTTP to both.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { createApp } from "../examples/express/app.js";

export const BIN = process.env.TESSERA_BIN;
if (!BIN) {
  throw new Error("set TESSERA_BIN to a debug build of the tessera binary (cargo build -p tessera-server)");
}

/** A running `tessera serve` on a temporary SQLite store. */
export async function startTessera(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), "tessera-node-"));
  const store = `sqlite://${join(dir, "tessera.db")}`;
  const clock = join(dir, "clock");
  let now = Date.now();
  const writeClock = () => {
    writeFileSync(`${clock}.tmp`, String(now));
    renameSync(`${clock}.tmp`, clock);
  };
  writeClock();
  const child = spawn(BIN, ["serve", "--listen", "127.0.0.1:0", "--store", store], {
    env: { PATH: process.env.PATH, TESSERA_TEST_CLOCK_FILE: clock, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tessera did not start:\n${stderr}`)), 60_000);
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`tessera exited (${code}):\n${stderr}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = line.match(/^tessera listening on (\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  const cli = spawnSync(BIN, ["api-key", "create", "node-tests", "--store", store], {
    env: { PATH: process.env.PATH },
    encoding: "utf8",
  });
  if (cli.status !== 0) throw new Error(`api-key create failed: ${cli.stderr}`);
  const apiKey = cli.stdout.trim();
  return {
    url,
    apiKey,
    stderr: () => stderr,
    /** Moves tessera's session clock forward. */
    advance(ms) {
      now += ms;
      writeClock();
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
    /** GET /v1/users/{user}/sessions: the user's live sessions. */
    async sessionsOf(user) {
      const res = await fetch(`${url}/v1/users/${encodeURIComponent(user)}/sessions`, {
        headers: { authorization: `Bearer ${apiKey}` },
      });
      if (res.status !== 200) throw new Error(`list sessions: ${res.status}`);
      return res.json();
    },
  };
}

/** The example app in front of `tessera`, listening on a free port. */
export async function startApp(tessera, options = {}) {
  const logs = [];
  const { app, sessions } = createApp({
    url: options.url ?? tessera.url,
    apiKey: tessera.apiKey,
    log: (line) => logs.push(line),
  });
  const server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    host: `127.0.0.1:${server.address().port}`,
    logs,
    sessions,
    async close() {
      sessions.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** The session cookie a response sets: { name, value, attributes } or null. */
export function sessionCookie(res) {
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(";").map((s) => s.trim());
    const eq = pair.indexOf("=");
    const name = pair.slice(0, eq);
    if (name.endsWith("session")) {
      return { name, value: pair.slice(eq + 1), attributes: attrs, raw: line };
    }
  }
  return null;
}

/**
 * A browser-like user of the app: keeps the session cookie, sends requests
 * as the same origin unless told otherwise.
 */
export class Browser {
  constructor(app) {
    this.app = app;
    this.cookie = null; // "name=value"
    this.csrf = null;
  }

  async request(method, path, { body, form, headers = {}, sameOrigin = true, csrf = true } = {}) {
    const h = { accept: "application/json", ...headers };
    if (this.cookie) h.cookie = this.cookie;
    if (sameOrigin && method !== "GET") {
      h["sec-fetch-site"] ??= "same-origin";
      h.origin ??= this.app.base;
    }
    if (csrf && this.csrf && method !== "GET" && !form) h["x-csrf-token"] ??= this.csrf;
    let payload;
    if (form) {
      h["content-type"] = "application/x-www-form-urlencoded";
      payload = new URLSearchParams(form).toString();
    } else if (body !== undefined) {
      h["content-type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const res = await fetch(this.app.base + path, { method, headers: h, body: payload, redirect: "manual" });
    const cookie = sessionCookie(res);
    if (cookie) this.cookie = cookie.value ? `${cookie.name}=${cookie.value}` : null;
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    if (json && typeof json.csrf_token === "string") this.csrf = json.csrf_token;
    return { status: res.status, headers: res.headers, cookie, json, text };
  }

  async login(user = "alice", password = "correct horse battery staple", extra = {}) {
    const res = await this.request("POST", "/login", { body: { username: user, password, ...extra } });
    if (res.status !== 200) throw new Error(`login: ${res.status} ${res.text}`);
    return res;
  }
}
