// A deliberately failing test, run only by test/unit/harness.test.ts and .ci/run through
// test/harness/vitest.config.ts: the run must exit non-zero. Never part of `npm test`'s own files.
import { expect, it } from 'vitest';

it('fails on purpose', () => {
  expect(1 + 1).toBe(3);
});
