/**
 * tessera sessions for Node. See README.md, and clients/PROTOCOL.md for the
 * wire contract with `tessera serve`.
 */
export { TesseraClient, type ClientOptions, type ClientStats } from "./client.js";
export { TesseraError, TesseraUnavailableError } from "./errors.js";
export { errorHandler, requireUser, tessera, type TesseraMiddleware, type TesseraOptions } from "./middleware.js";
export { TesseraSession, type LoginOptions, type SessionView } from "./session.js";
