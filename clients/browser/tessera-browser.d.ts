/** A deadline warning: which deadline is near, when it is, and how long is left (ms). */
export interface Warning {
  kind: "idle" | "absolute" | null;
  expiresAt?: number;
  remaining?: number;
}

export interface Options {
  statusUrl?: string;
  keepaliveUrl?: string;
  logoutUrl?: string;
  loginUrl?: string;
  warnBefore?: number;
  warnBeforeAbsolute?: number;
  pollInterval?: number;
  csrfToken?: string | null;
  serverNow?: number | string | null;
  idleExpiresAt?: number | string | null;
  absoluteExpiresAt?: number | string | null;
  onWarning?: (w: Warning) => void;
  onChange?: (c: { idleExpiresAt: number; absoluteExpiresAt: number; fromOtherTab: boolean }) => void;
  onSignedOut?: (reason: string) => void;
  autoStart?: boolean;
}

export interface Session {
  now(): number;
  refresh(): Promise<unknown>;
  keepalive(): Promise<unknown>;
  signOut(): Promise<void>;
  announceSignOut(): void;
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  warning(): Warning;
  start(): void;
  stop(): void;
  close(): void;
  readonly csrfToken: string | null;
  readonly idleExpiresAt: number;
  readonly absoluteExpiresAt: number;
}

export function create(options?: Options): Session;
/** Tells every open tab that a sign-out happened (for the page shown after it). */
export function announceSignOut(): void;
export const CHANNEL: string;
export const LOCK: string;
