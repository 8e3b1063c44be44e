import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';

const run = promisify(execFile);
const cli = (env: NodeJS.ProcessEnv, ...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env });

let s: TestServer;
let dir: string;
beforeAll(async () => {
  s = await startTestServer({
    reset: { enabled: true, cron: '30 2 * * *', timeZone: 'Europe/Berlin', replicaId: 'cli-r1' },
  });
  dir = await mkdtemp(join(tmpdir(), 'quota-keys-'));
});
afterAll(async () => {
  await s.close();
  await rm(dir, { recursive: true, force: true });
});

describe('npm run quota', () => {
  it('status without a subject shows the reset scheduler: schedule, zone, next and last run', async () => {
    await s.connect.admin.triggerResetSweep({});
    const { stdout } = await cli({ ...process.env, QUOTA_URL: s.baseUrl }, 'status');
    expect(stdout).toMatch(/^scheduled resets\s+enabled$/m);
    expect(stdout).toMatch(/^schedule\s+30 2 \* \* \* \(Europe\/Berlin\)$/m);
    expect(stdout).toMatch(/^next run\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/m);
    expect(stdout).toMatch(/^running\s+no$/m);
    expect(stdout).toMatch(/^last run\s+success at .* \(manual, replica cli-r1, \d+ rolled\)$/m);
  });

  it('keys create run at the same moment all land in the keys file', async () => {
    const file = join(dir, 'keys.json');
    const env = { ...process.env, QUOTA_API_KEYS_FILE: file };
    const names = Array.from({ length: 8 }, (_, i) => `svc-${i}`);
    const created = await Promise.all(
      names.map((n) => cli(env, 'keys', 'create', n, '--role', 'consumer')),
    );
    const keys = (JSON.parse(await readFile(file, 'utf8')) as { keys: { name: string }[] }).keys;
    expect(keys.map((k) => k.name).sort()).toEqual(names);
    expect(new Set(created.map((c) => c.stdout.trim())).size).toBe(8);
    await expect(readFile(`${file}.lock`)).rejects.toThrow(/ENOENT/);
  });
});
