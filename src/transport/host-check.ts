import { isIP } from 'node:net';

/**
 * Without API keys the service trusts anything that can reach its loopback port, so it must
 * be sure the request really is local. A web page can reach a loopback port through a name it
 * controls that resolves to 127.0.0.1 (DNS rebinding); its requests then carry that name in
 * Host (or :authority) and its own Origin. Both are checked: the Host must be a loopback name
 * or address, and a browser's Origin must be loopback too unless CORS lists it.
 */
export function isLoopbackAuthority(authority: string | undefined): boolean {
  if (!authority) return false;
  const host = hostOf(authority).toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** The host part of "host", "host:port", "[v6]" or "[v6]:port". */
function hostOf(authority: string): string {
  const a = authority.trim();
  if (a.startsWith('[')) return a.slice(1, a.indexOf(']') === -1 ? undefined : a.indexOf(']'));
  const colon = a.lastIndexOf(':');
  return colon === -1 || a.indexOf(':') !== colon ? a : a.slice(0, colon);
}

/** Whether an Origin header (absent for non-browser clients) names a loopback page. */
export function isLoopbackOrigin(origin: string): boolean {
  try {
    return isLoopbackAuthority(new URL(origin).host);
  } catch {
    return false; // "null" (sandboxed pages, file:) and garbage are not local pages
  }
}

/**
 * Why a request must be refused while authentication is off, or null to serve it. `allowOrigin`
 * says whether CORS lists the origin.
 */
export function unauthenticatedRequestProblem(
  authority: string | undefined,
  origin: string | undefined,
  allowOrigin: (origin: string) => boolean,
): string | null {
  if (!isLoopbackAuthority(authority))
    return `host "${authority ?? ''}" is not a loopback name or address; without API keys only local requests are served`;
  if (origin !== undefined && !isLoopbackOrigin(origin) && !allowOrigin(origin))
    return `origin "${origin}" is not allowed; set QUOTA_CORS_ORIGINS to let browser pages call`;
  return null;
}
