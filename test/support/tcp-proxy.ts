import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { createPool, type Db } from '../../src/ledger/db.js';
import { createQuotaServer, type QuotaServer } from '../../src/server.js';
import { createTestDatabase, TestClock, type TestDatabase } from './db.js';

/**
 * A loopback TCP proxy in front of PostgreSQL that a test can cut and restore, to play a
 * database that goes away and comes back without touching the real server.
 */
export class TcpProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private up = true;
  private refusedWaiters: { n: number; ok: () => void }[] = [];
  port = 0;
  /** Connections refused while cut: how often a client tried to reach the database. */
  refused = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
    /** Delay for everything sent towards the database (0: none). */
    private readonly delayMs = 0,
  ) {
    this.server = createServer((client) => {
      if (!this.up) {
        client.destroy();
        this.refused++;
        for (const w of this.refusedWaiters.filter((x) => this.refused >= x.n)) w.ok();
        this.refusedWaiters = this.refusedWaiters.filter((x) => this.refused < x.n);
        return;
      }
      const upstream = createConnection(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      if (this.delayMs > 0) {
        // Every byte towards the database arrives delayMs late, in order: a statement is sent
        // at once but takes effect (commits) only later.
        client.on('data', (chunk: Buffer) => {
          setTimeout(() => upstream.destroyed || upstream.write(chunk), this.delayMs);
        });
        client.on('end', () => setTimeout(() => upstream.end(), this.delayMs));
        upstream.pipe(client);
      } else {
        client.pipe(upstream).pipe(client);
      }
    });
  }

  /** Listens on a free loopback port; returns `url` rewritten to go through the proxy. */
  async start(url: string): Promise<string> {
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.port = (this.server.address() as { port: number }).port;
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Drops every open connection and refuses new ones. */
  cut(): void {
    this.up = false;
    for (const s of this.sockets) s.destroy();
  }

  /** Resolves once `n` connections in all have been refused: a client did try while cut. */
  waitForRefused(n: number): Promise<void> {
    if (this.refused >= n) return Promise.resolve();
    return new Promise((ok) => this.refusedWaiters.push({ n, ok }));
  }

  restore(): void {
    this.up = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }
}

export function targetOf(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 5432) };
}

export interface ProxiedServer {
  database: TestDatabase;
  /** Cut it to play a database that goes away; restore it to bring it back. */
  proxy: TcpProxy;
  db: Db;
  server: QuotaServer;
  port: number;
  close(): Promise<void>;
}

/** A real server whose database sits behind a TcpProxy the test controls. */
export async function startProxiedServer(now: string): Promise<ProxiedServer> {
  const database = await createTestDatabase();
  const t = targetOf(database.url);
  const proxy = new TcpProxy(t.host, t.port);
  const db = createPool({ connectionString: await proxy.start(database.url), max: 4 });
  const server = createQuotaServer({
    db,
    clock: new TestClock(new Date(now)),
    addr: { host: '127.0.0.1', port: 0 },
  });
  const port = (await server.listen()).addr.port;
  return {
    database,
    proxy,
    db,
    server,
    port,
    async close() {
      await server.close();
      await db.end();
      await proxy.close();
      await database.drop();
    },
  };
}
