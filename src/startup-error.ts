/**
 * One line saying why the service could not start, for the log at its default level: the
 * address that is taken, the database that cannot be reached (host and port), the schema that
 * this role may not migrate, the data directory that cannot be written.
 */
export function startupCause(err: unknown, databaseUrl: string | null): string {
  const e = err as (Error & { code?: string; address?: string; port?: number }) | undefined;
  const message = e instanceof Error ? e.message.split('\n')[0]! : String(err);
  const code = e?.code;
  if (code === 'EADDRINUSE')
    return `cannot listen on ${e?.address}:${e?.port}: the address is already in use (another service holds it; choose another with QUOTA_ADDR)`;
  if (code === 'EADDRNOTAVAIL')
    return `cannot listen on ${e?.address}:${e?.port}: no such address on this machine (QUOTA_ADDR)`;
  if (code === 'EACCES' && e?.port !== undefined)
    return `cannot listen on ${e.address}:${e.port}: permission denied (ports below 1024 need privileges)`;
  const where = databaseUrl ? describeDatabase(databaseUrl) : 'the embedded PostgreSQL';
  if (
    code &&
    ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH'].includes(code)
  )
    return `the database at ${where} is unreachable (${code}): ${message}`;
  if (code === '28P01' || code === '28000')
    return `the database at ${where} refused the login: ${message} (check DATABASE_URL)`;
  if (code === '3D000') return `the database at ${where} does not exist: ${message}`;
  if (/must be owner|permission denied/.test(message))
    return `migrations are pending and the role in DATABASE_URL may not apply them: ${message}; set QUOTA_MIGRATION_DATABASE_URL to the schema owner (see ops/db/app-role.sql)`;
  return message || 'unknown error (run with LOG_LEVEL=debug for details)';
}

/** host:port/database of a PostgreSQL URL, without user or password. */
export function describeDatabase(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

/** Whether a start-up error may go away by itself (the database is still coming up). */
export function isTransient(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return (
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT' ||
    code === 'EAI_AGAIN' ||
    code === '57P03' // the database system is starting up
  );
}
