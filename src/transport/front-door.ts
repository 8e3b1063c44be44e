import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

/** Every HTTP/2 connection starts with this (RFC 9113 §3.4); no HTTP/1.1 request does. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const SNIFF_BYTES = 4; // "PRI " already tells the two apart.

/**
 * Node's HTTP/2 server reads straight from a socket's handle, so bytes taken off the socket
 * to sniff the protocol and pushed back with unshift() never reach it. This Duplex replays
 * the sniffed bytes first and then relays the socket in both directions, with backpressure.
 */
export class ReplaySocket extends Duplex {
  constructor(
    private readonly socket: Socket,
    head: Buffer,
  ) {
    super({ allowHalfOpen: false });
    this.push(head);
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.once('end', () => this.push(null));
    socket.once('error', (err) => this.destroy(err));
    socket.once('close', () => this.destroy());
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }
  get remoteFamily(): string | undefined {
    return this.socket.remoteFamily;
  }
  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }
  get localPort(): number | undefined {
    return this.socket.localPort;
  }

  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay);
    return this;
  }
  setKeepAlive(enable?: boolean, delay?: number): this {
    this.socket.setKeepAlive(enable, delay);
    return this;
  }
  setTimeout(ms: number, cb?: () => void): this {
    this.socket.setTimeout(ms, cb);
    return this;
  }

  override _read(): void {
    this.socket.resume();
  }
  override _write(chunk: Buffer, enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, enc, cb);
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy(err ?? undefined);
    cb(err);
  }
}

export interface FrontDoorTargets {
  /** Receives HTTP/2 connections (gRPC). */
  http2(connection: Duplex): void;
  /** Receives everything else (HTTP/1.1: Connect, gRPC-Web, health, metrics). */
  http1(socket: Socket): void;
}

/**
 * Reads the first bytes of a connection and hands it to the HTTP/2 or the HTTP/1.1 server.
 * Connections that close or stall before saying anything are dropped.
 */
export function routeConnection(
  socket: Socket,
  targets: FrontDoorTargets,
  sniffTimeoutMs = 10_000,
): void {
  // The Duplex wrapper hides the socket from HTTP/2's own setNoDelay; without this Nagle's
  // algorithm holds back small responses and throughput collapses.
  socket.setNoDelay(true);
  let head = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), sniffTimeoutMs);
  const onError = () => {
    clearTimeout(timer);
    socket.destroy();
  };
  // A peer that hangs up before saying enough to tell the protocol apart gets nothing.
  const onEnd = () => onError();
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const n = Math.min(head.length, SNIFF_BYTES);
    const isHttp2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
    if (isHttp2 && head.length < SNIFF_BYTES) return; // too early to tell
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
    socket.off('end', onEnd);
    socket.pause();
    if (isHttp2) {
      targets.http2(new ReplaySocket(socket, head));
    } else {
      socket.unshift(head);
      targets.http1(socket);
      socket.resume();
    }
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.on('end', onEnd);
}
