import type { DescService } from '@bufbuild/protobuf';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { HeaderReader } from '../auth/header-reader.js';
import { unauthenticatedRequestProblem } from '../transport/host-check.js';
import { toFailure } from './errors.js';
import type { Authenticator } from './transport.js';

/** A refusal decided from the request line and headers alone. */
export interface Refusal {
  /** gRPC status code (Connect uses the same numbers). */
  code: number;
  message: string;
}

export type PreCheck = (
  path: string,
  authority: string | undefined,
  header: HeaderReader,
) => Refusal | null;

/**
 * What every request goes through before a byte of its body is read or decoded, on every
 * transport: with API keys, the key of a call to one of our methods (health, reflection and
 * the HTTP endpoints stay open); without them, the loopback rule for Host and Origin that
 * keeps a web page from reaching the service through a rebound name.
 */
export function createPreCheck(o: {
  services: readonly DescService[];
  authenticate: Authenticator | null;
  corsAllows: (origin: string) => boolean;
}): PreCheck {
  const methods = new Set(
    o.services.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)),
  );
  const authenticate = o.authenticate;
  if (!authenticate) {
    return (_path, authority, header) => {
      const problem = unauthenticatedRequestProblem(authority, header('origin'), o.corsAllows);
      return problem ? { code: GrpcStatus.PERMISSION_DENIED, message: problem } : null;
    };
  }
  return (path, _authority, header) => {
    if (!methods.has(path)) return null;
    try {
      authenticate(header, path.slice(1));
      return null;
    } catch (err) {
      const f = toFailure(err);
      return { code: f.code, message: f.message };
    }
  };
}
