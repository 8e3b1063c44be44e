import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Ports outside the kernel's ephemeral range, for processes a test starts on a fixed port (and
 * restarts on the same one). A port the kernel handed out by `listen(0)` and that was released
 * can be taken again at any moment, as the source port of any outgoing connection or by another
 * `listen(0)`; a port outside that range is only ever taken by someone who names it.
 */
function ephemeralRange(): [number, number] {
  try {
    const text = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8');
    const [low, high] = text.trim().split(/\s+/).map(Number);
    if (low && high) return [low, high];
  } catch {
    // not Linux
  }
  return [49152, 65535]; // IANA's dynamic range, what BSDs, macOS and Windows use
}

/** The larger stretch of ports outside the ephemeral range, above 10000. */
function outside(): [number, number] {
  const [low, high] = ephemeralRange();
  const below: [number, number] = [10_000, low];
  const above: [number, number] = [high + 1, 65_536];
  return below[1] - below[0] >= above[1] - above[0] ? below : above;
}

const canListen = (port: number): Promise<boolean> =>
  new Promise((ok) => {
    const s = createServer();
    s.once('error', () => ok(false));
    s.listen(port, '127.0.0.1', () => s.close(() => ok(true)));
  });

/** A random free loopback port that no outgoing connection will take from the test. */
export async function fixedPort(): Promise<number> {
  const [low, high] = outside();
  if (high - low < 1_000) throw new Error(`no room outside the ephemeral ports, ${low}..${high}`);
  for (let i = 0; i < 100; i++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port found between ${low} and ${high}`);
}
