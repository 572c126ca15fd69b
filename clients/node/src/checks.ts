/**
 * Request checks, batched: the checks of all requests that arrive in the
 * same turn of the event loop — and the data writes and deferred touches of
 * requests being answered, which are checks too (see `session.ts`) — go to
 * tessera in one call
 * (`POST /v1/requests/check-batch`) instead of one call each, as a Redis
 * client pipelines the commands of concurrent requests. A lone request
 * uses `POST /v1/requests/check`. Each request still gets its own decision,
 * made exactly as for a single check.
 */
import { type Answer, type TesseraClient } from "./client.js";
import { TesseraUnavailableError } from "./errors.js";

/** Most checks in one call (tessera's limit). */
const MAX_BATCH = 256;

interface Waiting {
  body: Record<string, unknown>;
  resolve(answer: Answer): void;
  reject(error: unknown): void;
}

/** Sends request checks, batching those of one event-loop turn. */
export class Checks {
  readonly #client: TesseraClient;
  readonly #batch: boolean;
  #queue: Waiting[] = [];
  #scheduled = false;

  constructor(client: TesseraClient, batch: boolean) {
    this.#client = client;
    this.#batch = batch;
  }

  /** The answer to one check, as `POST /v1/requests/check` gives it. */
  check(body: Record<string, unknown>): Promise<Answer> {
    if (!this.#batch) return this.#client.call("POST", "/v1/requests/check", body);
    return new Promise((resolve, reject) => {
      this.#queue.push({ body, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    const batch = this.#queue.splice(0, MAX_BATCH);
    this.#scheduled = this.#queue.length > 0;
    if (this.#scheduled) setImmediate(() => this.#flush());
    const [only] = batch;
    if (batch.length === 1 && only) {
      this.#client.call("POST", "/v1/requests/check", only.body).then(only.resolve, only.reject);
      return;
    }
    this.#client.call("POST", "/v1/requests/check-batch", { requests: batch.map((w) => w.body) }).then(
      (answer) => {
        const results = answer.body.results;
        if (answer.status !== 200 || !Array.isArray(results) || results.length !== batch.length) {
          // Not an answer to this batch: nobody is served on it.
          const error = new TesseraUnavailableError(`check-batch answered ${answer.status}`);
          for (const w of batch) w.reject(error);
          return;
        }
        batch.forEach((w, i) => {
          const result = results[i] as Record<string, unknown>;
          if (result?.outcome === "bad_request") {
            // Bad input of this request alone (a method, a header, a data
            // patch): its status (400, 413) and code, as a single check
            // would have answered.
            const status = typeof result.status === "number" ? result.status : 400;
            w.resolve({ status, body: { error: result.reason ?? "bad_request" } });
          } else {
            w.resolve({ status: 200, body: result });
          }
        });
      },
      (error: unknown) => {
        for (const w of batch) w.reject(error);
      },
    );
  }
}
