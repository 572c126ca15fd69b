/**
 * The middleware: one `POST /v1/requests/check` per request, and tessera's
 * decision applied (serve with a session, serve anonymously, or refuse).
 */
import type { IncomingMessage, ServerResponse } from "node:http";

import { type ClientOptions, TesseraClient } from "./client.js";
import { TesseraError } from "./errors.js";
import { type SessionView, TesseraSession } from "./session.js";
import { Checks } from "./checks.js";
import { UpdateQueues } from "./updates.js";

/** Options of {@link tessera}. */
export interface TesseraOptions extends ClientOptions {
  /**
   * Accept `Authorization: Bearer tss_…` session tokens (API clients) as
   * well as the cookie. Default false: browser apps have no use for it.
   */
  acceptBearer?: boolean;
  /**
   * Where to log one line when tessera cannot be asked (never secrets).
   * Default `console.error`.
   */
  log?: (message: string) => void;
  /**
   * Largest `application/x-www-form-urlencoded` body read to find the
   * `csrf_token` field when no body parser ran before. Default 64 KiB.
   */
  formLimit?: number;
  /**
   * Send `Clear-Site-Data: "cookies"` on sign-out, as tessera's own routes
   * do. Default true.
   */
  clearSiteDataOnLogout?: boolean;
  /**
   * Which requests are status queries (a page polling its own expiry):
   * they do not count as activity, so polling cannot keep an idle session
   * alive (OWASP Session Management Cheat Sheet, idle timeout). Default:
   * none.
   */
  statusQuery?: (req: IncomingMessage) => boolean;
  /**
   * Send the checks of requests that arrive together in one call to
   * tessera (`POST /v1/requests/check-batch`). Default true.
   */
  batchChecks?: boolean;
}

/** A connect/Express middleware with its tessera client. */
export interface TesseraMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void;
  /** The client (connection stats, {@link TesseraClient.close}). */
  readonly client: TesseraClient;
  /** Closes the kept-alive connections to tessera. */
  close(): void;
  /**
   * Resolves once the activity (touch) calls sent after responses so far
   * have been answered: await it before {@link close} at shutdown.
   */
  settled(): Promise<void>;
}

declare module "node:http" {
  interface IncomingMessage {
    /** The session, set by the tessera middleware. */
    session: TesseraSession;
  }
}

const CSRF_HEADER = "x-csrf-token";
const CSRF_FIELD = "csrf_token";
const DEFAULT_FORM_LIMIT = 64 * 1024;

/**
 * Sessions from `tessera serve` for Express (4 and 5) or any
 * `(req, res, next)` framework:
 *
 * ```js
 * import express from "express";
 * import { tessera } from "@tessera/node";
 *
 * const app = express();
 * app.use(tessera({ url: "http://127.0.0.1:8080", apiKey: process.env.TESSERA_API_KEY }));
 * app.get("/", (req, res) => res.send(req.session.user ?? "anonymous"));
 * ```
 *
 * Per request it asks tessera (`POST /v1/requests/check`) and then:
 * - with a live session, sets `req.session` and calls `next()`;
 * - without one, sets an empty `req.session` (with `reason`) and calls
 *   `next()`;
 * - for a request the CSRF / origin guard refuses, answers 403 itself;
 * - when tessera cannot be asked, answers 503 (fail closed) and logs one
 *   line without secrets.
 */
export function tessera(options: TesseraOptions): TesseraMiddleware {
  const client = new TesseraClient(options);
  const checks = new Checks(client, options.batchChecks ?? true);
  const updates = new UpdateQueues(checks);
  const log = options.log ?? ((message: string) => console.error(message));
  const formLimit = options.formLimit ?? DEFAULT_FORM_LIMIT;
  const acceptBearer = options.acceptBearer ?? false;
  const clearSiteData = options.clearSiteDataOnLogout ?? true;
  const statusQuery = options.statusQuery ?? (() => false);
  const touches = new Set<Promise<unknown>>();

  const middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void => {
    handle(req, res).then(
      (proceed) => {
        if (proceed) next();
      },
      (error: unknown) => {
        if (error instanceof TesseraError && error.status === 503) {
          log(`tessera: ${error.message}; answering 503`);
        } else {
          log(`tessera: request check failed (${error instanceof Error ? error.name : "error"}); answering 503`);
        }
        if (!res.headersSent) answer(res, req, 503, "unavailable", "session_service");
      },
    );
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const headers = req.headers;
    const csrf = header(req, CSRF_HEADER) ?? (await formToken(req, formLimit));
    if (csrf === TOO_LARGE) {
      answer(res, req, 413, "payload_too_large", "csrf_form_too_large");
      return false;
    }
    const check = await checks.check({
      method: req.method ?? "GET",
      cookie: header(req, "cookie"),
      authorization: acceptBearer ? header(req, "authorization") : null,
      origin: header(req, "origin"),
      sec_fetch_site: header(req, "sec-fetch-site"),
      host: headers.host ?? null,
      csrf_token: csrf,
      // The touch waits for the application's status (see touchAfter):
      // tessera only says whether one is due.
      touch: false,
    });
    if (check.status === 400 || check.status === 413) {
      // The request carried something tessera refuses to decide on (a
      // method that is not a method name, a header no HTTP request can
      // carry): bad input, answered as such, never served.
      answer(res, req, check.status, "bad_request", String(check.body.error ?? "invalid_request"));
      return false;
    }
    if (check.status !== 200) {
      throw new TesseraError(503, "unavailable", `check answered ${check.status}`);
    }
    const body = check.body;
    const setCookie = Array.isArray(body.set_cookie) ? body.set_cookie.filter((v) => typeof v === "string") : [];
    const outcome = body.outcome;
    if (outcome === "refused") {
      const status = typeof body.status === "number" ? body.status : 403;
      answer(res, req, status, "csrf_rejected", String(body.reason ?? "csrf"));
      return false;
    }
    const live = outcome === "session";
    if (!live && outcome !== "no_session") {
      throw new TesseraError(503, "unavailable", "unknown_outcome");
    }
    const session = new TesseraSession(
      client,
      checks,
      updates,
      req,
      res,
      live && typeof body.token === "string" ? body.token : null,
      live ? (body.session as SessionView) : null,
      typeof body.reason === "string" ? body.reason : null,
      clearSiteData,
      live && body.touch_due === true && !statusQuery(req),
    );
    session.setCookies(setCookie as string[]);
    req.session = session;
    res.once("finish", () => {
      // After the response: it never delays the answer. A failure only
      // means the idle deadline did not move this time.
      const touch = session.touchAfter(res.statusCode);
      if (!touch) return;
      const tracked = touch
        .catch((error: unknown) => {
          log(`tessera: activity not recorded (${error instanceof Error ? error.name : "error"})`);
        })
        .finally(() => touches.delete(tracked));
      touches.add(tracked);
    });
    return true;
  }

  return Object.assign(middleware, {
    client,
    close: () => client.close(),
    settled: async () => {
      while (touches.size > 0) await Promise.allSettled([...touches]);
    },
  });
}

/**
 * Requires a signed-in user: 401 `{"error":"unauthenticated","reason":…}`
 * otherwise (the reason says whether the session expired).
 */
export function requireUser() {
  return (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void => {
    const session = req.session;
    if (session?.user) {
      next();
      return;
    }
    answer(res, req, 401, "unauthenticated", session?.reason ?? "missing");
  };
}

/**
 * An Express error handler for errors thrown by `req.session` calls:
 * answers their status (503 when tessera is unavailable, 401 when the
 * session is gone, …) with `{"error", "reason"}`; other errors go on.
 */
export function errorHandler() {
  return (err: unknown, req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void => {
    if (!(err instanceof TesseraError) || res.headersSent) {
      next(err);
      return;
    }
    answer(res, req, err.status, err.code, err.reason ?? null);
  };
}

/** Answers with `{"error", "reason"}` as JSON, or a text line. */
function answer(res: ServerResponse, req: IncomingMessage, status: number, error: string, reason: string | null): void {
  const wantsJson = /json/i.test(String(req.headers.accept ?? "")) || /json/i.test(String(req.headers["content-type"] ?? ""));
  res.statusCode = status;
  res.setHeader("cache-control", "no-store");
  if (wantsJson) {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(reason === null ? { error } : { error, reason }));
  } else {
    res.setHeader("content-type", "text/plain; charset=utf-8");
    res.end(`${error}${reason ? `: ${reason}` : ""}\n`);
  }
}

/** One header as a string (repeated headers joined as HTTP allows). */
function header(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(name === "cookie" ? "; " : ", ") : value;
}

const TOO_LARGE = Symbol("too large");

/**
 * The `csrf_token` field of an `application/x-www-form-urlencoded` body.
 * If a body parser already ran (`req.body`), it is read from there;
 * otherwise the body is read here (up to `limit` bytes) and left parsed in
 * `req.body` for the handler, as `express.urlencoded()` would.
 */
async function formToken(req: IncomingMessage, limit: number): Promise<string | null | typeof TOO_LARGE> {
  const type = String(req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded") return null;
  const parsed = (req as IncomingMessage & { body?: unknown }).body;
  if (parsed !== undefined && parsed !== null && typeof parsed === "object") {
    const value = (parsed as Record<string, unknown>)[CSRF_FIELD];
    return typeof value === "string" ? value : null;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return TOO_LARGE;
    chunks.push(chunk as Buffer);
  }
  const params = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
  const body: Record<string, string> = {};
  for (const [k, v] of params) body[k] = v;
  // body-parser skips requests whose body was already read (`_body`).
  Object.assign(req, { body, _body: true });
  return params.get(CSRF_FIELD);
}
