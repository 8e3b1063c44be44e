import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildConsole, CONSOLE_DIST } from '../../console/build.js';

async function files(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    out.set(relative(dir, path), await readFile(path));
  }
  return out;
}

// npm start serves console/dist as committed (no build step at install or run time), so the
// committed bundle must be exactly what its sources build to.
describe('the committed console bundle', () => {
  it('is exactly what `npm run build:console` produces from console/src', async () => {
    const out = await mkdtemp(join(tmpdir(), 'quota-console-'));
    try {
      await buildConsole(out);
      const fresh = await files(out);
      const committed = await files(CONSOLE_DIST);
      expect([...committed.keys()].sort()).toEqual([...fresh.keys()].sort());
      for (const [name, bytes] of fresh) {
        expect(
          committed.get(name)?.equals(bytes),
          `console/dist/${name} is stale: run npm run build:console`,
        ).toBe(true);
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 60_000);
});
