import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** `npm start` as a user runs it: its own process group, as a terminal or a supervisor would. */
export interface NpmService {
  npm: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

export async function npmStart(env: Record<string, string>): Promise<NpmService> {
  const npm = spawn('npm', ['start'], {
    cwd: root,
    detached: true, // a process group of its own, so the test can signal the whole group
    env: { ...process.env, DATABASE_URL: '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  npm.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((ok) => npm.once('exit', (code) => ok(code)));
  const deadline = Date.now() + 60_000;
  while (!out.includes('quota ledger listening')) {
    if (npm.exitCode !== null || Date.now() > deadline) {
      killGroup(npm, 'SIGKILL');
      throw new Error(`npm start did not come up:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { npm, output: () => out, exited };
}

export function killGroup(p: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-p.pid!, signal);
  } catch {
    // already gone
  }
}

export async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'quota-npm-'));
  await chmod(dir, 0o755); // PostgreSQL runs as another user under root
  return dir;
}

/** A client of the embedded PostgreSQL of a data directory, as its superuser. */
export async function embeddedClient(dir: string): Promise<pg.Client> {
  const pid = (await readFile(join(dir, 'pg', 'postmaster.pid'), 'utf8')).split('\n');
  const password = (await readFile(join(dir, 'pg-password'), 'utf8')).trim();
  const c = new pg.Client({ host: '127.0.0.1', port: Number(pid[3]), user: 'postgres', password });
  c.on('error', () => {}); // the service stops this PostgreSQL under it in some tests
  await c.connect();
  return c;
}

/** Whether a PostgreSQL still holds the data directory (a clean stop removes the lock file). */
export const postgresRunning = (dir: string): boolean =>
  existsSync(join(dir, 'pg', 'postmaster.pid'));

/** Resolves once some backend waits for a lock (calls are in flight, held by the test). */
export async function untilCallsWait(c: pg.Client, atLeast: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const r = await c.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'`,
    );
    if (r.rows[0]!.n >= atLeast) return;
    await new Promise((ok) => setTimeout(ok, 25));
  }
  throw new Error(`fewer than ${atLeast} backends ever waited for the lock`);
}
