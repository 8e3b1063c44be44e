import { HealthImplementation } from 'grpc-health-check';
import type { Server } from '@grpc/grpc-js';
import type { Db } from '../ledger/db.js';

/**
 * Readiness: serving while the database answers and the server is not draining. The same
 * state feeds grpc.health.v1.Health and GET /readyz.
 */
export class Readiness {
  private readonly health: HealthImplementation;
  private dbUp = false;
  private draining = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly serviceNames: string[],
    private readonly onCheck: (dbUp: boolean) => void = () => {},
  ) {
    this.health = new HealthImplementation({ '': 'NOT_SERVING' });
    this.publish();
  }

  addToServer(server: Server): void {
    this.health.addToServer(server);
  }

  get ready(): boolean {
    return this.dbUp && !this.draining;
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
    this.inFlight = this.ping().finally(() => {
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

  private publish(): void {
    const status = this.ready ? 'SERVING' : 'NOT_SERVING';
    for (const name of ['', ...this.serviceNames]) this.health.setStatus(name, status);
  }
}
