import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { heapGrowingFlags, serviceV8Flags } from '../../src/v8-flags.js';

describe('serviceV8Flags', () => {
  it('turns allocation-site pretenuring off by default', () => {
    expect(serviceV8Flags([])).toEqual(['--no-allocation-site-pretenuring']);
    expect(serviceV8Flags(['--enable-source-maps', '--import', 'tsx'])).toEqual([
      '--no-allocation-site-pretenuring',
    ]);
  });

  it("leaves the choice to node's command line when it names the flag, in any spelling", () => {
    for (const given of [
      '--allocation-site-pretenuring',
      '--allocation_site_pretenuring',
      '--no-allocation-site-pretenuring',
      '--noallocation-site-pretenuring',
      '--allocation-site-pretenuring=true',
    ]) {
      expect(serviceV8Flags(['--enable-source-maps', given])).toEqual([]);
    }
  });

  it('is not fooled by flags that only look alike', () => {
    expect(serviceV8Flags(['--allocation-site-pretenuring-extra', '--trace-gc'])).toEqual([
      '--no-allocation-site-pretenuring',
    ]);
  });
});

describe('heapGrowingFlags', () => {
  const percent = (env: Record<string, string>) => {
    const { config, errors } = loadConfig(env);
    return { percent: config.heapGrowingPercent, errors };
  };

  it('grows the heap by half past its live objects unless QUOTA_HEAP_GROWING_PERCENT says otherwise', () => {
    expect(percent({})).toEqual({ percent: 50, errors: [] });
    expect(heapGrowingFlags(percent({}).percent, [])).toEqual(['--heap-growing-percent=50']);
    const chosen = percent({ QUOTA_HEAP_GROWING_PERCENT: '0' });
    expect(heapGrowingFlags(chosen.percent, [])).toEqual(['--heap-growing-percent=0']);
  });

  it('refuses a value that is not a whole percentage, naming the variable', () => {
    for (const raw of ['-1', '1001', '1.5', 'half']) {
      const { errors } = percent({ QUOTA_HEAP_GROWING_PERCENT: raw });
      expect(errors).toEqual([
        `QUOTA_HEAP_GROWING_PERCENT: "${raw}" must be a whole number from 0 to 1000`,
      ]);
    }
  });

  it("leaves the choice to node's command line when it names the flag", () => {
    for (const given of ['--heap-growing-percent=20', '--heap_growing_percent=0']) {
      expect(heapGrowingFlags(50, ['--enable-source-maps', given])).toEqual([]);
    }
    expect(heapGrowingFlags(50, ['--heap-growing-percentage=3'])).toEqual([
      '--heap-growing-percent=50',
    ]);
  });
});
