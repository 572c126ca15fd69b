/**
 * Atomic updates of session data, batched per session.
 *
 * `update(key, fn)` cannot run `fn` inside tessera, so it is a
 * compare-and-set: `PATCH /v1/sessions/data` with `set: {key: fn(current)}`
 * and `expect: {key: current}`, retried from the stored value on a 409.
 * Concurrent requests of one session in this process would all retry
 * against each other; instead their updates queue per session, and all
 * updates waiting when a write starts go out in ONE compare-and-set: the
 * functions run one after the other (each on the previous one's result),
 * exactly as if the updates had been made one by one. Another process's
 * write in between makes the whole batch start again from the stored data,
 * so nothing is lost either way.
 */
import { type Answer, type TesseraClient, errorOf } from "./client.js";
import { TesseraError } from "./errors.js";
import type { SessionView } from "./session.js";

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
  readonly #client: TesseraClient;
  readonly #lanes = new Map<string, Lane>();

  constructor(client: TesseraClient) {
    this.#client = client;
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
      const answer: Answer = await this.#client.call("PATCH", "/v1/sessions/data", {
        token,
        set: Object.fromEntries(values),
        expect,
      });
      if (answer.status === 200) {
        lane.latest = answer.body as unknown as SessionView;
        settle(batch, outcomes, lane.latest);
        return;
      }
      if (answer.status === 409 && answer.body.reason === "expectation_failed") {
        // Another process wrote first: run the batch again on what is
        // stored now.
        lane.latest = answer.body.session as SessionView;
        continue;
      }
      throw errorOf(answer);
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
