/**
 * Preloaded (node --import) into a service process a test starts, which has no injectable
 * clock: the process's time starts at QUOTA_TEST_CLOCK_START and runs on from there, so it
 * agrees with the TestClock of in-process replicas beside it. Nothing else changes.
 */
const start = process.env.QUOTA_TEST_CLOCK_START;
if (start) {
  const RealDate = Date;
  const offset = RealDate.parse(start) - RealDate.now();
  class ShiftedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(RealDate.now() + offset);
      else super(...(args as [string | number | Date]));
    }
    static override now(): number {
      return RealDate.now() + offset;
    }
  }
  globalThis.Date = ShiftedDate as DateConstructor;
}
export {};
