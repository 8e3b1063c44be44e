/** When a batcher may start another statement beside the ones it has running. */
export interface ParallelSettings {
  /** Statements in flight at once. */
  maxFlushes: number;
  /**
   * Items that must be waiting for a statement to start while another is running; fewer wait
   * for it to finish and then go in together. 1: any waiting item starts one.
   */
  minParallel: number;
  /**
   * How long fewer items wait for the newest running statement before they start their own
   * beside it anyway (ms): one held up (by a lock, a slow disk) must not hold up the rest.
   */
  maxWaitMs: number;
}

/**
 * Decides how many statements a batcher starts for what is waiting. Every statement costs a
 * round trip and the database's start-up of it whatever it carries, so while one runs, a few
 * waiting items are cheaper sent together after it than alone beside it; a queue long enough
 * is spread over the free statements, each of at least `minParallel` items, so that heavy load
 * still uses more than one connection and core of the database. Nothing waits when nothing
 * is running: a lone item goes at once.
 */
export class FlushGate {
  private running = 0;
  /** When the newest running statement started (performance.now()). */
  private newestStart = 0;
  private timer: NodeJS.Timeout | null = null;

  /** `wake` is called when items held back may go (the newest statement ran too long). */
  constructor(
    private readonly settings: ParallelSettings,
    private readonly wake: () => void,
  ) {}

  get inFlight(): number {
    return this.running;
  }

  /**
   * How many statements to share `waiting` items between now; 0 means wait (for a running
   * statement to finish, or for the wake-up this arms).
   */
  parts(waiting: number): number {
    const { maxFlushes, minParallel, maxWaitMs } = this.settings;
    const free = maxFlushes - this.running;
    if (waiting === 0 || free <= 0) return 0;
    const parts = Math.min(free, Math.floor(waiting / minParallel));
    if (parts > 0) return parts;
    if (this.running === 0) return 1;
    const waited = performance.now() - this.newestStart;
    if (waited >= maxWaitMs) return 1;
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.wake();
    }, maxWaitMs - waited);
    return 0;
  }

  started(): void {
    this.running++;
    this.newestStart = performance.now();
  }

  finished(): void {
    this.running--;
  }
}
