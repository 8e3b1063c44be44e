import { describe, expect, it } from 'vitest';
import { serviceV8Flags } from '../../src/v8-flags.js';

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
