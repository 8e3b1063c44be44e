import { EventEmitter } from 'node:events';
import type { CallSignal } from '../cancellation.js';
import { HealthCheckResponse_ServingStatus as Status } from '../gen/grpc/health/v1/health_pb.js';
import type { Db } from '../ledger/db.js';
import { untraced } from '../untraced.js';

/**
 * Readiness: serving while the database answers and the server is not draining. The same
 * state feeds grpc.health.v1.Health (grpc-js and Connect) and GET /readyz.
 */
export class Readiness {
  private readonly changes = new EventEmitter();
  private dbUp = false;
  private draining = false;
  private published: boolean | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly serviceNames: string[],
    private readonly onCheck: (dbUp: boolean) => void = () => {},
  ) {
    this.changes.setMaxListeners(0); // one per Watch call
    this.publish();
  }

  get ready(): boolean {
    return this.dbUp && !this.draining;
  }

  /** "" (the whole server) and every service health answers for. */
  get services(): string[] {
    return ['', ...this.serviceNames];
  }

  /** The status of "" (the whole server) or one of our services; undefined for others. */
  statusOf(service: string): Status | undefined {
    if (service !== '' && !this.serviceNames.includes(service)) return undefined;
    return this.ready ? Status.SERVING : Status.NOT_SERVING;
  }

  private inFlight: Promise<boolean> | null = null;
  private checkedAt = 0;

  /**
   * Pings the database and publishes the result. Calls within half a second share one ping,
   * so an open /readyz cannot be used to load the database.
   */
  check(): Promise<boolean> {
    if (this.inFlight) return this.inFlight;
    if (Date.now() - this.checkedAt < 500) return Promise.resolve(this.ready);
    this.inFlight = untraced(() => this.ping()).finally(() => {
      this.inFlight = null;
      this.checkedAt = Date.now();
    });
    return this.inFlight;
  }

  private async ping(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      // A database that drops packets silently would leave the ping hanging: 2 s is down.
      const timeout = new Promise<never>((_, fail) => {
        timer = setTimeout(() => fail(new Error('readiness ping timed out')), 2_000);
      });
      await Promise.race([this.db.query('SELECT 1'), timeout]);
      this.dbUp = true;
    } catch {
      this.dbUp = false;
    } finally {
      clearTimeout(timer);
    }
    this.onCheck(this.dbUp);
    this.publish();
    return this.ready;
  }

  start(intervalMs = 2_000): void {
    void this.check();
    this.timer = setInterval(() => void this.check(), intervalMs);
    this.timer.unref();
  }

  drain(): void {
    this.draining = true;
    clearInterval(this.timer);
    this.publish();
  }

  /** Tells watchers only when the status changes, as the health protocol says. */
  private publish(): void {
    const ready = this.ready;
    if (ready === this.published) return;
    this.published = ready;
    this.changes.emit('change');
  }

  /**
   * The statuses a health Watch sends: the current one, then each change, until `signal`
   * aborts. Once draining, NOT_SERVING is the last: ending the stream lets the connection close.
   */
  async *watch(service: string, signal: CallSignal): AsyncGenerator<{ status: Status }> {
    let last: Status | undefined;
    while (!signal.aborted) {
      const now = this.statusOf(service) ?? Status.SERVICE_UNKNOWN;
      if (now !== last) yield { status: (last = now) };
      if (this.draining) return;
      await new Promise<void>((ok) => {
        const done = () => {
          this.changes.off('change', done);
          signal.removeEventListener('abort', done);
          ok();
        };
        this.changes.on('change', done);
        signal.addEventListener('abort', done);
      });
    }
  }
}
