import { defineConfig } from 'vitest/config';
import base from '../../vitest.config.js';

// The project's own configuration (global setup included, since that is where an exit-code bug
// hid before), pointed at one deliberately failing file. Spread, not mergeConfig: that would
// append to `include` instead of replacing it.
export default defineConfig({
  ...base,
  test: { ...base.test, include: ['test/harness/always-fails.check.ts'] },
});
