import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..', '..');
const bin = join(root, 'node_modules', '.bin');

async function files(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    out.set(relative(dir, path), await readFile(path, 'utf8'));
  }
  return out;
}

describe('generated code', () => {
  it('is exactly what `npm run generate` produces from proto/', async () => {
    const out = await mkdtemp(join(tmpdir(), 'quota-gen-'));
    try {
      await promisify(execFile)(join(bin, 'buf'), ['generate', '--output', out], {
        cwd: root,
        env: { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` },
      });
      const fresh = await files(join(out, 'src', 'gen'));
      const committed = await files(join(root, 'src', 'gen'));
      expect([...committed.keys()].sort()).toEqual([...fresh.keys()].sort());
      for (const [name, text] of fresh)
        expect(committed.get(name), `src/gen/${name} is stale: run npm run generate`).toBe(text);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 60_000);

  it('passes buf lint (STANDARD)', async () => {
    await expect(
      promisify(execFile)(join(bin, 'buf'), ['lint'], { cwd: root }),
    ).resolves.toBeDefined();
  }, 60_000);
});
