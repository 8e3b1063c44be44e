import type { Caller } from '../auth/api-keys.js';
import { describeScope, inScope } from '../auth/scope.js';
import { QuotaError } from '../domain/errors.js';

/** What a handler knows about the call, whichever transport carried it. */
export interface CallContext extends Caller {
  /** Aborted when the caller gives up or the deadline passes. */
  signal: AbortSignal;
}

/** The caller when authentication is off: every role, every subject. */
export const ANONYMOUS: Caller = { actor: 'anonymous', role: null, scope: null };

/** Refuses a subject outside the key's scope. */
export function allowSubject(ctx: Caller, subject: string, field = 'subject'): void {
  if (!ctx.scope || inScope(ctx.scope, subject)) return;
  throw new QuotaError(
    'PERMISSION_DENIED',
    `${field}: key "${ctx.actor}" may only act on ${describeScope(ctx.scope)}`,
  );
}

/** Refuses an operation over every subject (or the "*" defaults) to a scoped key. */
export function requireUnscoped(ctx: Caller, what: string): void {
  if (!ctx.scope) return;
  throw new QuotaError(
    'PERMISSION_DENIED',
    `${what} reaches every subject; key "${ctx.actor}" may only act on ${describeScope(ctx.scope)}`,
  );
}

/** Whether the caller may do what only admins may (auth off counts as admin). */
export const isAdmin = (ctx: Caller): boolean => ctx.role === null || ctx.role === 'admin';

/** A unary handler written once and mounted on both transports. */
export type Handler<I, O> = (req: I, ctx: CallContext) => Promise<O>;
