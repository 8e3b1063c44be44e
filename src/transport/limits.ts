/**
 * What any peer may cost before (and regardless of) authentication. Each has a safe default
 * and an environment variable (src/config.ts); docs/security.md lists them.
 */
export interface ConnectionLimits {
  /** A connection must say which protocol it speaks (first bytes, TLS handshake) within this. */
  handshakeTimeoutMs: number;
  /** A connection with no call in progress is closed after this (HTTP/2: GOAWAY). */
  idleTimeoutMs: number;
  /** Connections open at once, per process; beyond, new ones are closed at once. */
  maxConnections: number;
  /** Streams (calls) open at once on one HTTP/2 connection. */
  http2MaxStreams: number;
  /** Memory an HTTP/2 session may hold (Node's maxSessionMemory), in MiB. */
  http2MaxSessionMemoryMb: number;
  /** HTTP/1.1: the request headers must arrive within this ... */
  http1HeadersTimeoutMs: number;
  /** ... and the whole request, body included, within this. */
  http1RequestTimeoutMs: number;
}

export const DEFAULT_LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  maxConnections: 1_000,
  http2MaxStreams: 100,
  http2MaxSessionMemoryMb: 10,
  http1HeadersTimeoutMs: 10_000,
  http1RequestTimeoutMs: 30_000,
};
