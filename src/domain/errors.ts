/** The failure classes a caller can act on; the transports map them onto gRPC status codes. */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'OUT_OF_RANGE'
  | 'UNAVAILABLE'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'DEADLINE_EXCEEDED'
  | 'UNIMPLEMENTED'
  | 'INTERNAL';

export class QuotaError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'QuotaError';
  }
}

export const invalid = (field: string, problem: string): QuotaError =>
  new QuotaError('INVALID_ARGUMENT', `${field}: ${problem}`);

export const noQuota = (subject: string, metric: string): QuotaError =>
  new QuotaError(
    'NOT_FOUND',
    `subject "${subject}" has no quota on metric "${metric}" (neither its own nor a default for "*")`,
  );
