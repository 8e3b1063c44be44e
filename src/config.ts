import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createSecureContext } from 'node:tls';
import { isIP } from 'node:net';
import { IANAZone } from 'luxon';
import { readKeyFile, type KeyFile } from './auth/api-keys.js';
import { isValidCron, type ResetSettings } from './scheduler/settings.js';
import { DEFAULT_GROUP_COMMIT, type GroupCommitSettings } from './batching/group-commit.js';
import { DEFAULT_LIMITS, type ConnectionLimits } from './transport/limits.js';
import { parseCorsOrigins } from './transport/cors.js';

export interface Config {
  databaseUrl: string | null;
  /** Where migrations run from: the schema owner. Defaults to databaseUrl. */
  migrationDatabaseUrl: string | null;
  /** Certificate and key (PEM) to serve TLS with; null for cleartext. */
  tls: { cert: Buffer; key: Buffer } | null;
  /** The API keys file and its contents at start-up; null means auth is off. */
  apiKeys: { path: string; file: KeyFile } | null;
  addr: { host: string; port: number };
  grpcAddr: { host: string; port: number } | null;
  /** QUOTA_CORS_ORIGINS: browser origins allowed to call; empty means CORS is off. */
  corsOrigins: string[];
  /** QUOTA_CONSOLE: serve the web console at / (default true). */
  console: boolean;
  dataDir: string;
  logLevel: string;
  poolSize: number;
  statementTimeoutMs: number;
  /** How long a pooled connection may sit unused before it is closed (0: never). */
  dbIdleTimeoutMs: number;
  drainTimeoutMs: number;
  reset: ResetSettings;
  groupCommit: GroupCommitSettings;
  /** QUOTA_STATE_CACHE_SUBJECTS: subjects whose state is kept to decide without a read; 0 is off. */
  stateCacheSubjects: number;
  /**
   * QUOTA_HEAP_GROWING_PERCENT: how far V8 lets the heap grow past what survived its last full
   * collection, in percent (see src/v8-flags.ts); 0 leaves it to V8.
   */
  heapGrowingPercent: number;
  limits: ConnectionLimits;
}

/** The heap's growth past its live objects (see src/v8-flags.ts). */
export const DEFAULT_HEAP_GROWING_PERCENT = 50;

/** Subjects whose last state each replica keeps (see SubjectCache): about 0.7 KB each. */
export const DEFAULT_STATE_CACHE_SUBJECTS = 50_000;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** "host:port" or "[v6]:port". */
export function parseHostPort(value: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim());
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  return { host: (m[1] ?? m[2])!, port };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

function integer(
  env: NodeJS.ProcessEnv,
  name: string,
  def: number,
  min: number,
  max: number,
  errors: string[],
): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    errors.push(`${name}: "${raw}" must be a whole number from ${min} to ${max}`);
    return def;
  }
  return n;
}

/**
 * Reads the environment. Returns every mistake at once, one line each, so an operator fixes
 * them in one go rather than one restart at a time.
 */
export function loadConfig(env: NodeJS.ProcessEnv): { config: Config; errors: string[] } {
  const errors: string[] = [];

  const postgresUrl = (name: string, hint: string): string | null => {
    const value = env[name]?.trim() || null;
    if (!value) return null;
    let ok = false;
    try {
      ok = ['postgres:', 'postgresql:'].includes(new URL(value).protocol);
    } catch {
      ok = false;
    }
    if (!ok) errors.push(`${name}: must be a postgres:// or postgresql:// URL (${hint})`);
    return value;
  };
  const databaseUrl = postgresUrl('DATABASE_URL', 'unset it to use the embedded database');
  const migrationDatabaseUrl = postgresUrl(
    'QUOTA_MIGRATION_DATABASE_URL',
    'unset it to migrate with DATABASE_URL',
  );
  if (migrationDatabaseUrl && !databaseUrl) {
    errors.push('QUOTA_MIGRATION_DATABASE_URL: only makes sense together with DATABASE_URL');
  }

  const certFile = env.QUOTA_TLS_CERT_FILE?.trim() || null;
  const keyFile = env.QUOTA_TLS_KEY_FILE?.trim() || null;
  let tls: Config['tls'] = null;
  if (Boolean(certFile) !== Boolean(keyFile)) {
    errors.push(
      'QUOTA_TLS_CERT_FILE and QUOTA_TLS_KEY_FILE: set both (PEM files) to serve TLS, or neither',
    );
  } else if (certFile && keyFile) {
    try {
      tls = { cert: readFileSync(certFile), key: readFileSync(keyFile) };
      createSecureContext(tls); // a certificate and key that do not go together fail here
    } catch (err) {
      tls = null;
      errors.push(
        `QUOTA_TLS_CERT_FILE / QUOTA_TLS_KEY_FILE: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  const keysPath = env.QUOTA_API_KEYS_FILE?.trim() || null;
  let apiKeys: Config['apiKeys'] = null;
  if (keysPath) {
    try {
      const file = readKeyFile(keysPath);
      if (file.keys.length === 0) {
        throw new Error(
          `${keysPath}: has no keys; add one with: npm run quota -- keys create NAME --role admin`,
        );
      }
      apiKeys = { path: keysPath, file };
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      for (const line of msg.split('\n')) errors.push(`QUOTA_API_KEYS_FILE: ${line}`);
    }
  }

  const addrRaw = env.QUOTA_ADDR?.trim() || '127.0.0.1:50051';
  const addr = parseHostPort(addrRaw);
  if (!addr)
    errors.push(`QUOTA_ADDR: "${addrRaw}" must be host:port, e.g. 127.0.0.1:50051 or [::1]:50051`);

  const grpcRaw = env.QUOTA_GRPC_ADDR?.trim() || '';
  const grpcAddr = grpcRaw ? parseHostPort(grpcRaw) : null;
  if (grpcRaw && !grpcAddr) errors.push(`QUOTA_GRPC_ADDR: "${grpcRaw}" must be host:port`);

  // Without API keys anyone who can connect can do anything, so only this machine may connect.
  for (const [name, a] of keysPath
    ? []
    : ([
        ['QUOTA_ADDR', addr],
        ['QUOTA_GRPC_ADDR', grpcAddr],
      ] as const)) {
    if (a && !isLoopback(a.host)) {
      errors.push(
        `${name}: ${a.host} is not a loopback address; without QUOTA_API_KEYS_FILE (authentication) the service only listens on 127.0.0.1, ::1 or localhost. Create a key with: npm run quota -- keys create NAME --role admin --file keys.json, then set QUOTA_API_KEYS_FILE=keys.json`,
      );
    }
  }

  const cors = parseCorsOrigins(env.QUOTA_CORS_ORIGINS);
  if (cors.error) errors.push(cors.error);

  const logLevel = (env.LOG_LEVEL?.trim() || 'info').toLowerCase();
  if (!LOG_LEVELS.includes(logLevel))
    errors.push(`LOG_LEVEL: "${env.LOG_LEVEL}" must be one of ${LOG_LEVELS.join(', ')}`);

  const enabledRaw = (env.QUOTA_RESET_ENABLED?.trim() || 'true').toLowerCase();
  if (!['true', 'false', '1', '0', 'yes', 'no'].includes(enabledRaw)) {
    errors.push(`QUOTA_RESET_ENABLED: "${env.QUOTA_RESET_ENABLED}" must be true or false`);
  }
  const resetZone = env.QUOTA_RESET_TIME_ZONE?.trim() || 'UTC';
  if (!IANAZone.isValidZone(resetZone)) {
    errors.push(
      `QUOTA_RESET_TIME_ZONE: "${resetZone}" is not an IANA time zone (e.g. UTC, Europe/Berlin)`,
    );
  }
  const cron = env.QUOTA_RESET_SCHEDULE?.trim() || '*/5 * * * *';
  if (!isValidCron(cron, IANAZone.isValidZone(resetZone) ? resetZone : 'UTC')) {
    errors.push(
      `QUOTA_RESET_SCHEDULE: "${cron}" is not a cron expression (e.g. "*/5 * * * *": every five minutes)`,
    );
  }

  const consoleRaw = (env.QUOTA_CONSOLE?.trim() || 'true').toLowerCase();
  if (!['true', 'false', '1', '0', 'yes', 'no'].includes(consoleRaw))
    errors.push(`QUOTA_CONSOLE: "${env.QUOTA_CONSOLE}" must be true or false`);

  const config: Config = {
    databaseUrl,
    migrationDatabaseUrl,
    apiKeys,
    tls,
    addr: addr ?? { host: '127.0.0.1', port: 50051 },
    grpcAddr,
    corsOrigins: cors.origins,
    console: !['false', '0', 'no'].includes(consoleRaw),
    dataDir: env.QUOTA_DATA_DIR?.trim() || '.data',
    logLevel,
    poolSize: integer(env, 'QUOTA_DB_POOL_SIZE', 16, 1, 1000, errors),
    statementTimeoutMs: integer(env, 'QUOTA_STATEMENT_TIMEOUT_MS', 10_000, 0, 3_600_000, errors),
    dbIdleTimeoutMs: integer(env, 'QUOTA_DB_IDLE_TIMEOUT_MS', 300_000, 0, 86_400_000, errors),
    drainTimeoutMs: integer(env, 'QUOTA_DRAIN_TIMEOUT_MS', 10_000, 0, 600_000, errors),
    limits: {
      handshakeTimeoutMs: integer(
        env,
        'QUOTA_HANDSHAKE_TIMEOUT_MS',
        DEFAULT_LIMITS.handshakeTimeoutMs,
        100,
        600_000,
        errors,
      ),
      idleTimeoutMs: integer(
        env,
        'QUOTA_IDLE_TIMEOUT_MS',
        DEFAULT_LIMITS.idleTimeoutMs,
        100,
        86_400_000,
        errors,
      ),
      maxConnections: integer(
        env,
        'QUOTA_MAX_CONNECTIONS',
        DEFAULT_LIMITS.maxConnections,
        1,
        1_000_000,
        errors,
      ),
      http2MaxStreams: integer(
        env,
        'QUOTA_HTTP2_MAX_STREAMS',
        DEFAULT_LIMITS.http2MaxStreams,
        1,
        10_000,
        errors,
      ),
      http2MaxSessionMemoryMb: integer(
        env,
        'QUOTA_HTTP2_MAX_SESSION_MEMORY_MB',
        DEFAULT_LIMITS.http2MaxSessionMemoryMb,
        1,
        1_024,
        errors,
      ),
      http1HeadersTimeoutMs: integer(
        env,
        'QUOTA_HTTP1_HEADERS_TIMEOUT_MS',
        DEFAULT_LIMITS.http1HeadersTimeoutMs,
        100,
        600_000,
        errors,
      ),
      http1RequestTimeoutMs: integer(
        env,
        'QUOTA_HTTP1_REQUEST_TIMEOUT_MS',
        DEFAULT_LIMITS.http1RequestTimeoutMs,
        100,
        3_600_000,
        errors,
      ),
    },
    groupCommit: {
      maxFlushes: integer(
        env,
        'QUOTA_GROUP_COMMIT_TRANSACTIONS',
        DEFAULT_GROUP_COMMIT.maxFlushes,
        1,
        1000,
        errors,
      ),
      maxBatch: integer(
        env,
        'QUOTA_GROUP_COMMIT_MAX_CALLS',
        DEFAULT_GROUP_COMMIT.maxBatch,
        1,
        10_000,
        errors,
      ),
      minParallel: integer(
        env,
        'QUOTA_GROUP_COMMIT_PARALLEL_CALLS',
        DEFAULT_GROUP_COMMIT.minParallel,
        1,
        10_000,
        errors,
      ),
      maxWaitMs: integer(
        env,
        'QUOTA_GROUP_COMMIT_WAIT_MS',
        DEFAULT_GROUP_COMMIT.maxWaitMs,
        0,
        10_000,
        errors,
      ),
    },
    stateCacheSubjects: integer(
      env,
      'QUOTA_STATE_CACHE_SUBJECTS',
      DEFAULT_STATE_CACHE_SUBJECTS,
      0,
      10_000_000,
      errors,
    ),
    heapGrowingPercent: integer(
      env,
      'QUOTA_HEAP_GROWING_PERCENT',
      DEFAULT_HEAP_GROWING_PERCENT,
      0,
      1_000,
      errors,
    ),
    reset: {
      enabled: ['true', '1', 'yes'].includes(enabledRaw),
      cron,
      timeZone: resetZone,
      replicaId: env.QUOTA_REPLICA_ID?.trim() || `${hostname()}-${process.pid}`,
      maxAttempts: integer(env, 'QUOTA_RESET_MAX_ATTEMPTS', 3, 1, 100, errors),
      retryBaseMs: integer(env, 'QUOTA_RESET_RETRY_BASE_MS', 5_000, 0, 3_600_000, errors),
      batchSize: integer(env, 'QUOTA_RESET_BATCH_SIZE', 5_000, 1, 100_000, errors),
    },
  };
  if (config.groupCommit.maxFlushes >= config.poolSize) {
    errors.push(
      `QUOTA_GROUP_COMMIT_TRANSACTIONS: ${config.groupCommit.maxFlushes} must be below QUOTA_DB_POOL_SIZE (${config.poolSize}), so reads, refunds and resets still get connections`,
    );
  }
  return { config, errors };
}
