/**
 * `req.session`: the session of one request, as tessera decided it.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

import type { Checks } from "./checks.js";
import { type TesseraClient, errorOf } from "./client.js";
import { TesseraError, TesseraUnavailableError } from "./errors.js";
import { type DataPatch, type UpdateQueues, writePatch } from "./updates.js";

/** A session as tessera returns it (`SessionView` in clients/PROTOCOL.md). */
export interface SessionView {
  user_id: string | null;
  handle: string;
  data: Record<string, unknown>;
  created_at: string;
  last_seen_at: string;
  authenticated_at: string | null;
  idle_expires_at: string;
  absolute_expires_at: string;
  csrf_token: string;
  /** `default`, or `remember` for a "keep me signed in" session. */
  session_class?: string;
}

/** Options of {@link TesseraSession.login}. */
export interface LoginOptions {
  /**
   * "Keep me signed in": the session gets tessera's remember lifetime class
   * (`remember_idle_timeout`, `remember_absolute_timeout`) and the cookie a
   * `Max-Age` of its absolute lifetime. tessera answers 400
   * `remember_not_configured` when it does not offer that class.
   */
  remember?: boolean;
}

/**
 * The session of one request. Reads are local (tessera answered them in the
 * request check); every change goes to tessera at once, so the handler
 * learns about a failure while it can still answer 503.
 */
export class TesseraSession {
  readonly #client: TesseraClient;
  readonly #checks: Checks;
  readonly #updates: UpdateQueues;
  /** tessera said counting this request as activity would move the idle deadline. */
  #touchDue: boolean;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  /** Set-Cookie values this session added to the response. */
  #cookies: string[] = [];
  #token: string | null;
  #view: SessionView | null;
  #reason: string | null;
  readonly #clearSiteData: boolean;

  /** @internal Made by the middleware. */
  constructor(
    client: TesseraClient,
    checks: Checks,
    updates: UpdateQueues,
    req: IncomingMessage,
    res: ServerResponse,
    token: string | null,
    view: SessionView | null,
    reason: string | null,
    clearSiteData: boolean,
    touchDue: boolean,
  ) {
    this.#client = client;
    this.#checks = checks;
    this.#updates = updates;
    this.#touchDue = touchDue;
    this.#req = req;
    this.#res = res;
    this.#token = token;
    this.#view = view;
    this.#reason = reason;
    this.#clearSiteData = clearSiteData;
  }

  /** The signed-in user, or `null`. */
  get user(): string | null {
    return this.#view?.user_id ?? null;
  }

  /** True with a live session (signed in or anonymous). */
  get isLive(): boolean {
    return this.#view !== null;
  }

  /** The public session handle (`tsh_…`, safe to show and log), or `null`. */
  get handle(): string | null {
    return this.#view?.handle ?? null;
  }

  /**
   * Why there is no session: `missing`, `expired_idle`, `expired_absolute`,
   * or a newer code (treat unknown ones like `missing`); `null` with one.
   */
  get reason(): string | null {
    return this.#view ? null : (this.#reason ?? "missing");
  }

  /** When the session ends without further activity (the earlier deadline). */
  get expiresAt(): Date | null {
    if (!this.#view) return null;
    const idle = Date.parse(this.#view.idle_expires_at);
    const absolute = Date.parse(this.#view.absolute_expires_at);
    return new Date(Math.min(idle, absolute));
  }

  /** The idle deadline (moves with activity), or `null`. */
  get idleExpiresAt(): Date | null {
    return this.#view ? new Date(this.#view.idle_expires_at) : null;
  }

  /** The absolute deadline (fixed at sign-in), or `null`. */
  get absoluteExpiresAt(): Date | null {
    return this.#view ? new Date(this.#view.absolute_expires_at) : null;
  }

  /** True for a "keep me signed in" session (`login(id, { remember: true })`). */
  get remembered(): boolean {
    return this.#view?.session_class === "remember";
  }

  /** When the user last signed in or re-authenticated, or `null`. */
  get authenticatedAt(): Date | null {
    const at = this.#view?.authenticated_at;
    return at ? new Date(at) : null;
  }

  /** A copy of the session data. */
  get data(): Record<string, unknown> {
    return structuredClone(this.#view?.data ?? {});
  }

  /**
   * A CSRF token for this render: put it in forms as the `csrf_token` field
   * or send it as the `X-CSRF-Token` header. `null` without a session.
   */
  csrfToken(): string | null {
    return this.#view?.csrf_token ?? null;
  }

  /** A value of the session data (a copy), or `undefined`. */
  get<T = unknown>(key: string): T | undefined {
    const value = this.#view?.data[key];
    return value === undefined ? undefined : (structuredClone(value) as T);
  }

  /**
   * Sets a value now (merged key by key onto the latest stored data, so
   * concurrent writes of other keys are kept). Needs a live session.
   */
  async set(key: string, value: unknown): Promise<void> {
    await this.#patch({ set: { [key]: value } });
  }

  /** Removes a key now. Needs a live session. */
  async remove(key: string): Promise<void> {
    await this.#patch({ remove: [key] });
  }

  /**
   * Atomic read-modify-write of one key: `fn` gets the current value and
   * returns the new one. tessera writes it only if the key still holds the
   * value `fn` saw (compare-and-set); otherwise `fn` runs again on the
   * newer value. So concurrent updates are never lost. Concurrent updates
   * of one session in this process are batched into one write (see
   * `updates.ts`). `fn` may run more than once: keep it free of side
   * effects. Returns the value written.
   */
  async update<T>(key: string, fn: (current: T | undefined) => T | Promise<T>): Promise<T> {
    this.#requireLive();
    try {
      const { value, view } = await this.#updates.update(
        this.#token as string,
        this.#view as SessionView,
        key,
        fn as (current: unknown) => unknown,
      );
      this.#view = view;
      // The write moved the idle deadline.
      this.#touchDue = false;
      return value as T;
    } catch (error) {
      // The session ended meanwhile.
      if (error instanceof TesseraError && error.status === 401) this.#ended(error);
      throw error;
    }
  }

  /**
   * Signs `userId` in: a brand-new token (and CSRF token) in a new cookie;
   * the token this request presented stops working at once (no session
   * fixation). Call it after checking the user's credentials.
   */
  async login(userId: string, options: LoginOptions = {}): Promise<void> {
    const socket = this.#req.socket;
    const agent = this.#req.headers["user-agent"];
    const answer = await this.#client.call("POST", "/v1/requests/login", {
      token: this.#token,
      user_id: userId,
      ip: ipOf(this.#req) ?? socket?.remoteAddress ?? null,
      user_agent: typeof agent === "string" ? agent.slice(0, 512) : null,
      remember: options.remember === true,
    });
    this.#install(answer);
  }

  /** A new token for the same session (after a privilege change). */
  async rotate(): Promise<void> {
    this.#requireLive();
    const answer = await this.#client.call("POST", "/v1/requests/rotate", { token: this.#token });
    this.#install(answer);
  }

  /**
   * Signs out: the session is deleted in tessera and the cookie cleared.
   * Returns whether a live session ended. Without a session it only clears
   * the cookie.
   */
  async logout(): Promise<boolean> {
    const answer = await this.#client.call("POST", "/v1/requests/logout", { token: this.#token });
    if (answer.status !== 200) throw this.#failed(answer);
    this.#setCookies(stringList(answer.body.set_cookie));
    if (this.#clearSiteData) {
      // Also drops whatever else the site stored in cookies for this user
      // (OWASP Session Management Cheat Sheet: clear on sign-out).
      this.#res.setHeader("clear-site-data", '"cookies"');
    }
    this.#token = null;
    this.#view = null;
    this.#reason = "signed_out";
    this.#touchDue = false;
    return answer.body.ended === true;
  }

  /**
   * @internal Counts the request as activity once the application's status
   * is known, as tessera's own layer does: a request the application
   * refused (4xx) does not move the idle deadline, so failed attempts
   * cannot keep a session alive (OWASP Session Management Cheat Sheet,
   * idle timeout). Only sent when tessera said the deadline is due to move
   * (outside its touch step), and not after a write (which moved it).
   */
  touchAfter(status: number): Promise<unknown> | null {
    if (!this.#touchDue || !this.#token || status >= 400) return null;
    this.#touchDue = false;
    return this.#checks.check({ method: "GET", authorization: `Bearer ${this.#token}`, touch: true });
  }

  /** @internal Adds tessera's Set-Cookie values (from the request check). */
  setCookies(values: string[]): void {
    this.#setCookies(values);
  }

  #install(answer: Awaited<ReturnType<TesseraClient["call"]>>): void {
    if (answer.status !== 200) throw this.#failed(answer);
    const { token, session } = answer.body;
    if (typeof token !== "string" || typeof session !== "object" || session === null) {
      throw new TesseraUnavailableError("a sign-in answer without a token");
    }
    this.#token = token;
    this.#view = session as SessionView;
    this.#reason = null;
    this.#touchDue = false;
    this.#setCookies(stringList(answer.body.set_cookie));
  }

  async #patch(patch: DataPatch): Promise<void> {
    this.#requireLive();
    try {
      const { view } = await writePatch(this.#checks, this.#token as string, patch);
      this.#view = view;
      this.#touchDue = false;
    } catch (error) {
      if (error instanceof TesseraError && error.status === 401) this.#ended(error);
      throw error;
    }
  }

  #ended(error: TesseraError): void {
    this.#view = null;
    this.#token = null;
    this.#reason = error.reason ?? "missing";
    this.#touchDue = false;
  }

  #requireLive(): void {
    if (!this.#view || !this.#token) {
      throw new TesseraError(401, "unauthenticated", this.reason ?? "missing");
    }
  }

  /** A 4xx answer as an error; a 401 also ends the session locally. */
  #failed(answer: Awaited<ReturnType<TesseraClient["call"]>>): TesseraError {
    const error = errorOf(answer);
    if (answer.status === 401) this.#ended(error);
    return error;
  }

  /**
   * Puts tessera's Set-Cookie values on the response, replacing the ones
   * this session set earlier in the request (a cleared dead cookie, then a
   * sign-in: only the last word goes out). A response that changes the
   * cookie is marked `Cache-Control: no-store`, so no cache keeps a session token
   * (OWASP Session Management Cheat Sheet).
   */
  #setCookies(values: string[]): void {
    if (values.length === 0 && this.#cookies.length === 0) return;
    if (this.#res.headersSent) {
      throw new TesseraError(500, "headers_sent", undefined, "tessera: the response was already sent; change the session before answering");
    }
    const existing = this.#res.getHeader("set-cookie");
    const others = (Array.isArray(existing) ? existing : existing === undefined ? [] : [String(existing)]).filter(
      (v) => !this.#cookies.includes(v),
    );
    this.#cookies = values;
    this.#res.setHeader("set-cookie", [...others, ...values]);
    if (values.length > 0) {
      this.#res.setHeader("cache-control", "no-store");
    }
  }
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

/** Express's `req.ip` (honours its `trust proxy` setting) when present. */
function ipOf(req: IncomingMessage): string | undefined {
  const ip = (req as IncomingMessage & { ip?: unknown }).ip;
  return typeof ip === "string" ? ip : undefined;
}
