import { setFlagsFromString } from 'node:v8';
import { createLogger, safeError } from './logger.js';
import { KeyStore } from './auth/api-keys.js';
import { watchKeyFile } from './auth/key-file.js';
import { loadConfig } from './config.js';
import { createPool, type Db } from './ledger/db.js';
import { startEmbedded, type EmbeddedDatabase } from './database/embedded.js';
import { migrate } from './database/migrate.js';
import { createQuotaServer, type QuotaServer } from './server.js';
import { isTransient, startupCause } from './startup-error.js';
import { heapGrowingFlags } from './v8-flags.js';

const { config, errors } = loadConfig(process.env);
if (errors.length) {
  for (const e of errors) process.stderr.write(`config error: ${e}\n`);
  process.exit(2);
}
for (const flag of heapGrowingFlags(config.heapGrowingPercent, process.execArgv)) {
  setFlagsFromString(flag);
}

const log = createLogger(config.logLevel);

async function migrateWithRetry(url: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await migrate(url, (msg) => log.debug({ migration: msg }, 'migrate'));
      return;
    } catch (err) {
      // Only a database that is still coming up is worth waiting for; a refused login or a
      // missing privilege will not fix itself.
      if (attempt >= 10 || !isTransient(err)) throw err;
      log.warn(
        { cause: startupCause(err, url), attempt },
        'database not ready for migrations; retrying',
      );
      await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 5_000)));
    }
  }
}

/** What is running, for the stop (or for a start-up that fails halfway). */
interface Running {
  embedded: EmbeddedDatabase | null;
  db: Db | null;
  server: QuotaServer | null;
}

async function main(running: Running, tracing: boolean): Promise<void> {
  let url = config.databaseUrl;
  if (!url) {
    log.info({ dataDir: config.dataDir }, 'no DATABASE_URL: starting the embedded PostgreSQL');
    running.embedded = await startEmbedded(config.dataDir, {
      log: (line) => log.debug({ postgres: line }),
      notice: (line) => log.warn(line),
    });
    url = running.embedded.url;
  }
  await migrateWithRetry(config.migrationDatabaseUrl ?? url);
  let authenticate;
  if (config.apiKeys) {
    const store = new KeyStore(config.apiKeys.file);
    watchKeyFile(config.apiKeys.path, store, log);
    authenticate = store.authenticate.bind(store);
    log.info({ keys: store.size, file: config.apiKeys.path }, 'API keys required');
  } else {
    // Without a listener SIGHUP would end the process; here it simply has nothing to reload.
    process.on('SIGHUP', () => log.info('SIGHUP: no API keys file to reload'));
    log.warn(
      'QUOTA_API_KEYS_FILE is not set: authentication is off and only loopback clients can connect',
    );
  }
  running.db = createPool({
    connectionString: url,
    max: config.poolSize,
    statementTimeoutMs: config.statementTimeoutMs,
    idleTimeoutMs: config.dbIdleTimeoutMs,
  });
  running.server = createQuotaServer({
    db: running.db,
    addr: config.addr,
    grpcAddr: config.grpcAddr,
    corsOrigins: config.corsOrigins,
    console: config.console,
    logger: log,
    drainTimeoutMs: config.drainTimeoutMs,
    reset: config.reset,
    groupCommit: config.groupCommit,
    stateCacheSubjects: config.stateCacheSubjects,
    limits: config.limits,
    tls: config.tls,
    authenticate,
    tracing,
  });
  const bound = await running.server.listen();
  if (!config.reset.enabled) {
    log.info(
      { schedule: config.reset.cron, timeZone: config.reset.timeZone },
      'scheduled resets disabled (QUOTA_RESET_ENABLED=false): periods roll lazily on the next call',
    );
  }
  log.info(
    {
      addr: `${bound.addr.host}:${bound.addr.port}`,
      grpcAddr: bound.grpcAddr && `${bound.grpcAddr.host}:${bound.grpcAddr.port}`,
    },
    `quota ledger listening${config.tls ? ' with TLS' : ''} (gRPC, Connect, gRPC-Web, /healthz, /readyz, /metrics)`,
  );
}

async function flushTelemetry(stop: (() => Promise<void>) | null): Promise<void> {
  if (!stop) return;
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((ok) => (timer = setTimeout(ok, 3_000)));
  await Promise.race([
    stop().catch((err: unknown) => log.warn({ err: safeError(err) }, 'could not flush traces')),
    limit,
  ]);
  clearTimeout(timer);
}

// Copies of one signal that arrive together count as one: a Ctrl-C reaches every process of
// the terminal's group, and npm then forwards its own copy to the service as well.
const SAME_SIGNAL_MS = 1_000;

/**
 * Starts the service and handles SIGTERM and SIGINT: the first drains (not ready, scheduler
 * stopped, in-flight calls answered, pool closed, embedded PostgreSQL shut down, exit 0); a
 * later one stops at once, still shutting the embedded database down cleanly.
 */
export async function run(stopTelemetry: (() => Promise<void>) | null): Promise<void> {
  const running: Running = { embedded: null, db: null, server: null };
  let firstSignalAt: number | null = null;
  const stop = async (signal: string) => {
    log.info({ signal }, 'stopping: draining in-flight calls');
    try {
      await running.server?.close();
      await running.db?.end();
      await running.embedded?.stop();
      // Spans that cannot reach the collector are dropped; that never makes a stop unclean.
      await flushTelemetry(stopTelemetry);
      log.info('stopped');
      process.exit(0);
    } catch (err) {
      log.error({ err: safeError(err) }, 'unclean stop');
      process.exit(1);
    }
  };
  const stopNow = async (signal: string) => {
    log.warn({ signal }, 'second signal: stopping now without waiting for calls');
    await running.embedded?.stop().catch(() => {});
    process.exit(1);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now();
    if (firstSignalAt === null) {
      firstSignalAt = now;
      void stop(signal);
    } else if (now - firstSignalAt >= SAME_SIGNAL_MS) {
      void stopNow(signal);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await main(running, stopTelemetry !== null);
  } catch (err) {
    log.fatal(
      { err: safeError(err) },
      `failed to start: ${startupCause(err, config.migrationDatabaseUrl ?? config.databaseUrl)}`,
    );
    await running.db?.end().catch(() => {});
    await running.embedded?.stop().catch(() => {});
    process.exit(1);
  }
}
