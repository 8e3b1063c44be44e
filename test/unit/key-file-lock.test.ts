import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKey, listKeys, removeStaleLock } from '../../src/auth/key-file.js';

const keyFileModule = resolve('src/auth/key-file.ts');

/** The PID of a process that has exited (and so cannot hold anything). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quota-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the keys file lock', () => {
  it('takes over a lock whose holder is gone, and leaves no lock behind', async () => {
    const file = join(dir, 'keys.json');
    await writeFile(`${file}.lock`, String(deadPid()));
    const key = await createKey(file, 'svc', 'consumer');
    expect(key).toMatch(/\S{20,}/);
    expect((await listKeys(file)).map((k) => k.name)).toEqual(['svc']);
    expect(await readdir(dir)).toEqual(['keys.json']);
  });

  it('leaves alone the lock of a live process, and one whose holder has not written its PID yet', async () => {
    const lock = join(dir, 'keys.json.lock');
    await writeFile(lock, String(process.pid));
    expect(await removeStaleLock(lock)).toEqual({ again: false, holder: process.pid });
    expect(await readFile(lock, 'utf8')).toBe(String(process.pid));
    await writeFile(lock, '');
    expect(await removeStaleLock(lock)).toEqual({ again: false, holder: 0 });
    expect(await readdir(dir)).toEqual(['keys.json.lock']);
  });

  it('removes the dead holder’s lock, and does nothing when the lock is gone already', async () => {
    const lock = join(dir, 'keys.json.lock');
    const pid = deadPid();
    await writeFile(lock, String(pid));
    expect(await removeStaleLock(lock)).toEqual({ again: true, holder: pid });
    expect(await readdir(dir)).toEqual([]);
    expect(await removeStaleLock(lock)).toEqual({ again: true, holder: 0 });
    expect(await readdir(dir)).toEqual([]);
  });

  it('many processes creating keys at once all land, with no lock left behind', async () => {
    // The race this guards: a waiter reads the PID of a holder that then releases the lock
    // and exits while another process takes it; the waiter finds that PID dead and must not
    // remove the new lock. Before that was so, 24 processes at once lost a key in 5 rounds of 40.
    const file = join(dir, 'keys.json');
    const names = Array.from({ length: 16 }, (_, i) => `svc-${i}`);
    const script = `import { createKey } from ${JSON.stringify(keyFileModule)};
      await createKey(process.argv[1], process.argv[2], 'consumer');`;
    const results = await Promise.all(
      names.map(
        (n) =>
          new Promise<number | null>((ok) =>
            spawn(
              process.execPath,
              ['--import', 'tsx', '--input-type=module', '-e', script, file, n],
              {
                stdio: 'ignore',
              },
            ).once('exit', ok),
          ),
      ),
    );
    expect(results).toEqual(names.map(() => 0));
    expect((await listKeys(file)).map((k) => k.name).sort()).toEqual([...names].sort());
    expect(await readdir(dir)).toEqual(['keys.json']);
  }, 60_000);
});
