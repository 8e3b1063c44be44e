import { Code, ConnectError } from '@connectrpc/connect';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { QuotaError } from '../domain/errors.js';
import { mapDbError } from '../ledger/db.js';

export interface RpcFailure {
  /** The gRPC status code; Connect uses the same numbers. */
  code: number;
  message: string;
  /** Set for failures that are our fault, to be logged with their cause. */
  internal?: unknown;
}

/** Every failure becomes a status code and a message a person can act on; nothing else leaks. */
export function toFailure(err: unknown): RpcFailure {
  if (err instanceof ConnectError) return { code: err.code, message: err.rawMessage };
  const mapped = mapDbError(err);
  if (mapped instanceof QuotaError)
    return { code: GrpcStatus[mapped.code], message: mapped.message };
  return {
    code: GrpcStatus.INTERNAL,
    message: 'internal error; it has been logged',
    internal: err,
  };
}

export const toConnectError = (f: RpcFailure): ConnectError =>
  new ConnectError(f.message, f.code as Code);
