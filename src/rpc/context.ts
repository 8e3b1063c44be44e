/** What a handler knows about the call, whichever transport carried it. */
export interface CallContext {
  /** Who is calling: an API key name, or "anonymous" when auth is off. */
  actor: string;
  /** Aborted when the caller gives up or the deadline passes. */
  signal: AbortSignal;
}

export const ANONYMOUS = 'anonymous';

/** A unary handler written once and mounted on both transports. */
export type Handler<I, O> = (req: I, ctx: CallContext) => Promise<O>;
