import type {
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
  MessageShape,
} from '@bufbuild/protobuf';
import type { CallSignal } from '../cancellation.js';
import type { Caller } from '../auth/api-keys.js';
import { describeScope, inScope } from '../auth/scope.js';
import { QuotaError } from '../domain/errors.js';

/** What a handler knows about the call, whichever transport carried it. */
export interface CallContext extends Caller {
  /** Aborted when the caller gives up or the deadline passes. */
  signal: CallSignal;
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

/**
 * The handler of one method of a generated service descriptor: a unary method answers with
 * its response message; a server-streaming one resolves to the stream once the request is
 * checked (so a bad request fails the call rather than the stream).
 */
export type MethodHandler<M> =
  M extends DescMethodUnary<infer I, infer O>
    ? Handler<MessageShape<I>, MessageShape<O>>
    : M extends DescMethodServerStreaming<infer I, infer O>
      ? Handler<MessageShape<I>, AsyncIterable<MessageShape<O>>>
      : never;

/**
 * Every method of a service, typed from its descriptor (as connect-es's ServiceImpl, but with
 * our CallContext): a method added to the proto and left unimplemented fails the type check.
 */
export type ServiceHandlers<S extends DescService> = {
  [K in keyof S['method']]: MethodHandler<S['method'][K]>;
};
