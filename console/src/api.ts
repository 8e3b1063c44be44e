import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';

// The key lives in this tab's sessionStorage only: gone when the tab closes, never in a URL,
// a cookie or localStorage, and sent only as a header to this same origin.
const KEY = 'quota-console-key';

export const getKey = (): string | null => sessionStorage.getItem(KEY);
export const setKey = (key: string): void => sessionStorage.setItem(KEY, key);
export const forgetKey = (): void => sessionStorage.removeItem(KEY);

const withKey: Interceptor = (next) => (req) => {
  const key = getKey();
  if (key) req.header.set('authorization', `Bearer ${key}`);
  return next(req);
};

// Same origin: the page and the service share the port, so no CORS is involved.
const transport = createConnectTransport({
  baseUrl: location.origin,
  interceptors: [withKey],
});

export const quota = createClient(QuotaService, transport);
export const admin = createClient(QuotaAdminService, transport);

export type Role = 'consumer' | 'reader' | 'admin';

export interface Me {
  actor: string;
  role: Role;
  authenticated: boolean;
  scope: string;
}

/** The service's own words for a failed call. */
export function message(err: unknown): string {
  const e = ConnectError.from(err);
  return `${Code[e.code] ?? 'error'}: ${e.rawMessage}`;
}

export const isUnauthenticated = (err: unknown): boolean =>
  ConnectError.from(err).code === Code.Unauthenticated;

export async function whoAmI(): Promise<Me> {
  const r = await admin.whoAmI({});
  const scope = [...r.subjects, ...(r.subjectPrefix ? [`${r.subjectPrefix}*`] : [])].join(', ');
  return {
    actor: r.actor,
    role: r.role as Role,
    authenticated: r.authenticated,
    scope,
  };
}
