import { spawn, type ChildProcess } from 'node:child_process';

export interface ServiceProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * Starts the service as a real process and waits until it listens: `src/main.ts` through tsx
 * (what `npm start` runs), or `dist/main.js` as built by `npm run build` (`npm run start:dist`).
 * `nodeArgs` go to Node itself (the benchmark passes --cpu-prof).
 */
export async function startService(
  env: Record<string, string>,
  nodeArgs: string[] = [],
  entry: 'src/main.ts' | 'dist/main.js' = 'src/main.ts',
): Promise<ServiceProcess> {
  const loader = entry.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...loader, ...nodeArgs, entry], {
    env: { ...process.env, DATABASE_URL: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  const deadline = Date.now() + 60_000;
  while (!out.includes('listening')) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL'); // never leave a half-started service behind
      throw new Error(`did not start (it must log "listening" at info level):\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, output: () => out, exited };
}

/** One Connect JSON call with plain fetch; returns the HTTP status and the body. */
export async function callJson(
  port: number,
  path: string,
  body: object,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}/${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
