import { Code, ConnectError } from '@connectrpc/connect';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { QuotaError } from '../domain/errors.js';

export interface RpcFailure {
  /** The gRPC status code; Connect uses the same numbers. */
  code: number;
  message: string;
  /** Set for failures that are our fault, to be logged with their cause. */
  internal?: unknown;
}

/**
 * Every failure becomes a status code and a message a person can act on; nothing else leaks.
 * Database failures arrive already mapped (the ledger's inTransaction, reading and query turn
 * them into QuotaErrors), so anything that is not a QuotaError is ours: INTERNAL, logged.
 */
export function toFailure(err: unknown): RpcFailure {
  // Messages may quote what the caller sent; a lone surrogate in one (from JSON's "\ud800")
  // cannot be encoded as UTF-8 or percent-encoded into grpc-message, where encodeURI (grpc-js)
  // and encodeURIComponent (connect-node's gRPC-Web) would throw: it becomes U+FFFD.
  if (err instanceof ConnectError)
    return { code: err.code, message: err.rawMessage.toWellFormed() };
  if (err instanceof QuotaError) {
    return { code: GrpcStatus[err.code], message: err.message.toWellFormed() };
  }
  return {
    code: GrpcStatus.INTERNAL,
    message: 'internal error; it has been logged',
    internal: err,
  };
}

export const toConnectError = (f: RpcFailure): ConnectError =>
  new ConnectError(f.message, f.code as Code);
