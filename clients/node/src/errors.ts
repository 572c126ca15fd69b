/**
 * Errors of the client. Messages never contain a token, the API key or a
 * CSRF token: they name the operation, the status and tessera's error code.
 */

/** A refusal or an error answer from tessera (a 4xx, or a decision). */
export class TesseraError extends Error {
  /** The HTTP status the application should answer with. */
  readonly status: number;
  /** tessera's machine-readable code (`unauthenticated`, `conflict`, …). */
  readonly code: string;
  /** Why (`expired_idle`, `csrf_token_missing`, …), when tessera said. */
  readonly reason: string | undefined;

  constructor(status: number, code: string, reason?: string, message?: string) {
    super(message ?? `tessera: ${code}${reason ? ` (${reason})` : ""}`);
    this.name = "TesseraError";
    this.status = status;
    this.code = code;
    this.reason = reason;
  }
}

/**
 * tessera could not be asked (connection refused, timeout, a 5xx, an answer
 * that is not the protocol). The request must fail closed: status 503,
 * never served as anonymous or signed in.
 */
export class TesseraUnavailableError extends TesseraError {
  constructor(detail: string) {
    super(503, "unavailable", "session_service", `tessera unavailable: ${detail}`);
    this.name = "TesseraUnavailableError";
  }
}
