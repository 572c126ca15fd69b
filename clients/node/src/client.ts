/**
 * The HTTP connection to `tessera serve`: JSON over keep-alive connections
 * (node:http / node:https with a keep-alive Agent, so a busy app reuses a
 * few sockets instead of opening one per request), a timeout on every
 * call, and fail-closed errors.
 */
import http from "node:http";
import https from "node:https";

import { TesseraError, TesseraUnavailableError } from "./errors.js";

/** How to reach tessera. */
export interface ClientOptions {
  /** Base URL of `tessera serve`, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** An API key from `tessera api-key create NAME` (`tsk_…`). A secret. */
  apiKey: string;
  /** Milliseconds before a call counts as failed (503). Default 5000. */
  timeoutMs?: number;
  /** Most sockets kept open to tessera. Default 64. */
  maxSockets?: number;
}

/** A parsed answer: status and JSON body. */
export interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** Connection figures, for tests and monitoring. */
export interface ClientStats {
  /** Calls made. */
  requests: number;
  /** New TCP connections opened (the rest reused a kept-alive socket). */
  connections: number;
}

/** Longest answer read from tessera; more is not the protocol. */
const MAX_ANSWER_BYTES = 1 << 20;

/** A JSON client for tessera's `/v1` API. */
export class TesseraClient {
  readonly #base: URL;
  readonly #authorization: string;
  readonly #timeoutMs: number;
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;
  readonly #stats: ClientStats = { requests: 0, connections: 0 };

  constructor(options: ClientOptions) {
    const base = new URL(options.url);
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new TypeError("tessera url must be http: or https:");
    }
    if (base.username || base.password) {
      // Credentials in the URL would end up in error messages and logs.
      throw new TypeError("tessera url must not contain credentials; pass apiKey");
    }
    if (!options.apiKey || /[\r\n]/.test(options.apiKey)) {
      throw new TypeError("tessera apiKey is missing or not a header value");
    }
    this.#base = base;
    this.#authorization = `Bearer ${options.apiKey}`;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    // Idle sockets are closed after 4 s, before servers usually drop them
    // (tessera's header_read_timeout is 10 s).
    const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 64, timeout: 4000 };
    this.#agent = base.protocol === "https:" ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.#request = base.protocol === "https:" ? https.request : http.request;
  }

  /** Where tessera is (no secrets in it), for messages. */
  get origin(): string {
    return this.#base.origin;
  }

  /** Calls and connections so far. */
  get stats(): Readonly<ClientStats> {
    return { ...this.#stats };
  }

  /** Closes the kept-alive sockets (at shutdown). */
  close(): void {
    this.#agent.destroy();
  }

  /**
   * Sends `body` as JSON and parses the JSON answer. 2xx and 4xx answers
   * are returned; anything that is not an answer of the protocol throws
   * {@link TesseraUnavailableError}, and a 401 `unauthorized` (wrong API
   * key) throws it too, since the app cannot serve anyone then.
   */
  async call(method: "POST" | "PATCH", path: string, body: unknown): Promise<Answer> {
    const payload = Buffer.from(JSON.stringify(body));
    const url = new URL(path, this.#base);
    this.#stats.requests += 1;
    let answer: Answer;
    try {
      answer = await this.#send(method, url, path, payload);
    } catch (e) {
      // tessera (or a proxy) may close an idle kept-alive socket just as it
      // is reused; the request then never reached it, and one retry on a
      // fresh socket is what Node's documentation advises
      // (`request.reusedSocket`).
      if (!(e instanceof StaleSocket)) throw e;
      answer = await this.#send(method, url, path, payload);
    }

    if (answer.status >= 500 || answer.status < 200 || (answer.status >= 300 && answer.status < 400)) {
      throw this.#unavailable(path, `status ${answer.status} ${String(answer.body.error ?? "")}`.trim());
    }
    if (answer.status === 401 && answer.body.error === "unauthorized") {
      throw this.#unavailable(path, "the API key was refused (check TESSERA_API_KEY)");
    }
    if (answer.status === 429) {
      throw this.#unavailable(path, "rate limited");
    }
    return answer;
  }

  #send(method: string, url: URL, path: string, payload: Buffer): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      const req = this.#request(
        url,
        {
          method,
          agent: this.#agent,
          headers: {
            authorization: this.#authorization,
            "content-type": "application/json",
            accept: "application/json",
            "content-length": payload.length,
          },
          timeout: this.#timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_ANSWER_BYTES) {
              res.destroy(new Error("answer too large"));
              return;
            }
            chunks.push(chunk);
          });
          res.on("error", (e) => reject(this.#unavailable(path, e.message)));
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            let parsed: unknown;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            } catch {
              reject(this.#unavailable(path, `status ${status} without a JSON body`));
              return;
            }
            if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
              reject(this.#unavailable(path, `status ${status} with an unexpected body`));
              return;
            }
            resolve({ status, body: parsed as Record<string, unknown> });
          });
        },
      );
      req.on("socket", () => {
        // The agent marks a kept-alive socket it hands out again.
        if (!req.reusedSocket) this.#stats.connections += 1;
      });
      req.on("timeout", () => req.destroy(new Error(`no answer within ${this.#timeoutMs} ms`)));
      req.on("error", (e: NodeJS.ErrnoException) => {
        const stale = req.reusedSocket && (e.code === "ECONNRESET" || e.code === "EPIPE");
        reject(stale ? new StaleSocket() : this.#unavailable(path, e.code ?? e.message));
      });
      req.end(payload);
    });
  }

  #unavailable(path: string, detail: string): TesseraUnavailableError {
    return new TesseraUnavailableError(`${this.#base.origin}${path}: ${detail}`);
  }
}

/** A kept-alive socket was closed by the other side before this request. */
class StaleSocket extends Error {}

/** Throws the error tessera answered, for a non-2xx answer. */
export function errorOf(answer: Answer): TesseraError {
  const { error, reason, message } = answer.body;
  return new TesseraError(
    answer.status,
    typeof error === "string" ? error : "error",
    typeof reason === "string" ? reason : undefined,
    typeof message === "string" ? `tessera: ${message}` : undefined,
  );
}
