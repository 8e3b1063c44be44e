import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { inject, it, expect } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

// A failing test must fail the run: CI decides on the exit status alone. (.ci/run checks the
// same with the embedded database; here the nested run reuses this run's server.)
it('a run with a failing test exits non-zero', () => {
  const run = spawnSync(
    process.execPath,
    ['node_modules/vitest/vitest.mjs', 'run', '--config', 'test/harness/vitest.config.ts'],
    {
      cwd: root,
      env: { ...process.env, TEST_DATABASE_URL: inject('adminDatabaseUrl'), CI: '1' },
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  expect(run.stdout + run.stderr).toMatch(/1 failed/);
  expect(run.status).not.toBe(0);
  expect(run.status).not.toBeNull();
});
