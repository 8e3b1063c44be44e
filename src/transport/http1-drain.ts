import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Tracks the HTTP/1.1 side's connections and in-flight requests. Node's HTTP server only
 * does this for sockets it accepted itself (after listen()); ours arrive from the front
 * socket, so without this a stop would neither wait for Connect calls nor close idle
 * keep-alive connections.
 */
export class Http1Drain {
  private readonly idleTimers = new Map<Socket, NodeJS.Timeout>();
  private readonly sockets = new Set<Socket>();
  private readonly inFlight = new Map<Socket, number>();
  private draining = false;
  private idle: (() => void) | null = null;

  /**
   * A new connection must deliver its first request's headers within `headersMs`; after an
   * answer, the next request may take `idleMs` to arrive; a request's body must be complete
   * within `requestMs` of its headers. Each lapse closes the connection. (Node's own request
   * and header timeouts only run for connections its server accepted after listen().)
   */
  constructor(private readonly t: { idleMs: number; headersMs: number; requestMs: number }) {}

  private armIdle(socket: Socket, ms = this.t.idleMs): void {
    clearTimeout(this.idleTimers.get(socket));
    const t = setTimeout(() => socket.destroy(), ms);
    t.unref();
    this.idleTimers.set(socket, t);
  }

  /** Registers a connection handed to the HTTP/1.1 server. */
  adopt(socket: Socket): void {
    this.sockets.add(socket);
    this.armIdle(socket, this.t.headersMs);
    socket.once('close', () => {
      clearTimeout(this.idleTimers.get(socket));
      this.idleTimers.delete(socket);
      this.sockets.delete(socket);
      this.inFlight.delete(socket);
      this.check();
    });
  }

  /** Wraps the request handler to count calls and, while draining, end keep-alive. */
  wrap(handler: RequestListener): RequestListener {
    return (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket;
      clearTimeout(this.idleTimers.get(socket));
      this.inFlight.set(socket, (this.inFlight.get(socket) ?? 0) + 1);
      // The body must arrive in time; the answer may take as long as the call does.
      if (!req.complete) {
        const body = setTimeout(() => socket.destroy(), this.t.requestMs);
        body.unref();
        const done = () => clearTimeout(body);
        req.once('end', done);
        req.once('close', done);
      }
      if (this.draining) res.setHeader('connection', 'close');
      res.once('close', () => {
        const n = (this.inFlight.get(socket) ?? 1) - 1;
        if (n > 0) this.inFlight.set(socket, n);
        else {
          this.inFlight.delete(socket);
          if (!socket.destroyed) this.armIdle(socket);
        }
        if (this.draining && n <= 0 && !socket.destroyed) socket.end();
        this.check();
      });
      handler(req, res);
    };
  }

  /** Closes idle connections at once and resolves when the busy ones have answered. */
  drain(): Promise<void> {
    this.draining = true;
    for (const s of this.sockets) if (!this.inFlight.has(s)) s.destroy();
    return new Promise((ok) => {
      this.idle = ok;
      this.check();
    });
  }

  /** Ends whatever is left. */
  destroyAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  private check(): void {
    if (this.draining && this.inFlight.size === 0 && this.idle) {
      this.idle();
      this.idle = null;
    }
  }
}
