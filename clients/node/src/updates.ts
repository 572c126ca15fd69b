/**
 * Session data writes, and atomic updates batched per session.
 *
 * Every write is a request check that carries the change
 * (`POST /v1/requests/check` with `patch`, see clients/PROTOCOL.md), sent
 * through {@link Checks}: the writes of requests being answered share one
 * call to tessera with the checks of requests arriving in the same
 * event-loop turn, so under load a request costs a fraction of a call
 * instead of a check plus a `PATCH`. The write's check presents the
 * session's current token as a bearer credential: the request itself
 * already passed the CSRF / origin guard in its own check, before the
 * handler ran, and a bearer check never changes cookies.
 *
 * `update(key, fn)` cannot run `fn` inside tessera, so it is a
 * compare-and-set: `set: {key: fn(current)}` with `expect: {key: current}`,
 * retried from the stored value when tessera answers `conflict`.
 * Concurrent requests of one session in this process would all retry
 * against each other; instead their updates queue per session, and all
 * updates waiting when a write starts go out in ONE compare-and-set: the
 * functions run one after the other (each on the previous one's result),
 * exactly as if the updates had been made one by one. Another process's
 * write in between makes the whole batch start again from the stored data,
 * so nothing is lost either way.
 */
import { type Answer, errorOf } from "./client.js";
import type { Checks } from "./checks.js";
import { TesseraError, TesseraUnavailableError } from "./errors.js";
import type { SessionView } from "./session.js";

/** A data change as a check carries it. */
export interface DataPatch {
  set?: Record<string, unknown>;
  remove?: string[];
  expect?: Record<string, unknown>;
}

/** What a write's check answered. */
export interface Written {
  /** False: an `expect`ed value did not hold, nothing was written. */
  applied: boolean;
  /** The session as stored after the write (or now, on a conflict). */
  view: SessionView;
}

/**
 * Writes `patch` into the session of `token` (one check carrying it).
 * Throws a 401 {@link TesseraError} with the reason when the session is
 * gone, the error tessera answered for bad input, and
 * {@link TesseraUnavailableError} when tessera cannot be asked.
 */
export async function writePatch(checks: Checks, token: string, patch: DataPatch): Promise<Written> {
  const answer: Answer = await checks.check({
    method: "PATCH",
    authorization: `Bearer ${token}`,
    touch: true,
    patch,
  });
  if (answer.status !== 200) throw errorOf(answer);
  const body = answer.body;
  if (body.outcome === "no_session") {
    // Ended meanwhile: tessera never resurrects it, nothing was written.
    throw new TesseraError(401, "unauthenticated", typeof body.reason === "string" ? body.reason : "missing");
  }
  const view = body.session;
  if (body.outcome !== "session" || typeof view !== "object" || view === null) {
    throw new TesseraUnavailableError("a write was answered without a session");
  }
  if (body.patch !== "applied" && body.patch !== "conflict") {
    throw new TesseraUnavailableError("a write was answered without its outcome");
  }
  return { applied: body.patch === "applied", view: view as SessionView };
}

/** Compare-and-set attempts of one batch before it gives up (409). */
const ATTEMPTS = 64;
/** Most updates sent in one write. */
const MAX_BATCH = 256;

type UpdateFn = (current: unknown) => unknown;

interface Pending {
  key: string;
  fn: UpdateFn;
  resolve(result: { value: unknown; view: SessionView }): void;
  reject(error: unknown): void;
}

interface Lane {
  pending: Pending[];
  /** The freshest session this process has seen for the token. */
  latest: SessionView;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** The per-session queues of one client. */
export class UpdateQueues {
  readonly #checks: Checks;
  readonly #lanes = new Map<string, Lane>();

  constructor(checks: Checks) {
    this.#checks = checks;
  }

  /**
   * Queues an update of `key` in the session of `token`; `view` is what the
   * caller knows of the session. Resolves with the value written and the
   * session as stored after it.
   */
  update(token: string, view: SessionView, key: string, fn: UpdateFn): Promise<{ value: unknown; view: SessionView }> {
    return new Promise((resolve, reject) => {
      const running = this.#lanes.get(token);
      if (running) {
        running.pending.push({ key, fn, resolve, reject });
        return;
      }
      const lane: Lane = { pending: [{ key, fn, resolve, reject }], latest: view };
      this.#lanes.set(token, lane);
      void this.#drain(token, lane);
    });
  }

  async #drain(token: string, lane: Lane): Promise<void> {
    try {
      while (lane.pending.length > 0) {
        const batch = lane.pending.splice(0, MAX_BATCH);
        try {
          await this.#write(token, lane, batch);
        } catch (error) {
          for (const entry of batch) entry.reject(error);
        }
      }
    } finally {
      // The loop ended with nothing pending, and nothing can be queued
      // between that check and here (no await in between).
      this.#lanes.delete(token);
    }
  }

  async #write(token: string, lane: Lane, batch: Pending[]): Promise<void> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const stored = lane.latest.data;
      const values = new Map<string, unknown>();
      const outcomes: Outcome[] = [];
      for (const entry of batch) {
        const before = values.has(entry.key) ? values.get(entry.key) : stored[entry.key];
        try {
          const value = await entry.fn(before === undefined ? undefined : structuredClone(before));
          values.set(entry.key, value);
          outcomes.push({ ok: true, value });
        } catch (error) {
          // This update fails alone; the next one of the key starts from
          // the value before it.
          outcomes.push({ ok: false, error });
        }
      }
      if (values.size === 0) {
        settle(batch, outcomes, lane.latest);
        return;
      }
      const expect: Record<string, unknown> = {};
      for (const key of values.keys()) expect[key] = stored[key] === undefined ? null : stored[key];
      const written = await writePatch(this.#checks, token, { set: Object.fromEntries(values), expect });
      // Applied: the record as written. Conflict: another process wrote
      // first; run the batch again on what is stored now.
      lane.latest = written.view;
      if (written.applied) {
        settle(batch, outcomes, lane.latest);
        return;
      }
    }
    throw new TesseraError(409, "conflict", "concurrent_modification");
  }
}

function settle(batch: Pending[], outcomes: Outcome[], view: SessionView): void {
  batch.forEach((entry, i) => {
    const outcome = outcomes[i];
    if (outcome?.ok) entry.resolve({ value: outcome.value, view });
    else entry.reject(outcome?.error);
  });
}
