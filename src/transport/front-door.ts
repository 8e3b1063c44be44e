import type { Socket } from 'node:net';

/** Every HTTP/2 connection starts with this (RFC 9113 §3.4); no HTTP/1.1 request does. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const SNIFF_BYTES = 4; // "PRI " already tells the two apart.

export interface FrontDoorTargets {
  /** Receives HTTP/2 connections (gRPC). */
  http2(socket: Socket): void;
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
    // The sniffed bytes go back onto the socket itself. Node's HTTP/2 session feeds bytes
    // already buffered on a socket to its parser before reading from the handle (Node 20+),
    // so both servers get the untouched native socket: no JavaScript stream in between,
    // which would cost a copy and a callback per chunk in each direction.
    socket.unshift(head);
    if (isHttp2) {
      targets.http2(socket);
    } else {
      targets.http1(socket);
      socket.resume();
    }
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.on('end', onEnd);
}
