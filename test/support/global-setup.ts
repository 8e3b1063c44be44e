import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbedded } from '../../src/database/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}

/**
 * One PostgreSQL for the whole run: TEST_DATABASE_URL if given (any server where we may
 * create databases), otherwise a throwaway embedded cluster. Test files create their own
 * databases in it so they can run in parallel.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const given = process.env.TEST_DATABASE_URL;
  if (given) {
    project.provide('adminDatabaseUrl', given);
    return async () => {};
  }
  const dir = await mkdtemp(join(tmpdir(), 'quota-test-pg-'));
  // Under root the cluster runs as a separate postgres user, which must be able to enter it.
  await chmod(dir, 0o755);
  const pg = await startEmbedded(dir);
  project.provide('adminDatabaseUrl', pg.url);
  return async () => {
    await pg.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
