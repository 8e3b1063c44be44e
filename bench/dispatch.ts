// What the per-stream HTTP/2 dispatch costs plain gRPC, without the database's noise:
// `npx tsx bench/dispatch.ts` runs a grpc-js server whose handler answers at once, behind the
// same front door as the service, with and without dispatchHttp2Streams, alternately, and
// prints the server's CPU per call. BENCH_ROUNDS (5), BENCH_SECONDS (4).
import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { routeConnection } from '../src/transport/front-door.js';
import { dispatchHttp2Streams } from '../src/transport/h2-dispatch.js';
import { median } from './load.js';
import { channels, unary } from './service.js';

const PATH = '/bench.Echo/Echo';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);

async function serve(dispatch: boolean): Promise<void> {
  const server = new grpc.Server();
  const id = (b: Buffer) => b;
  server.register(
    PATH,
    (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(8)),
    id,
    id,
    'unary',
  );
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  if (dispatch) dispatchHttp2Streams(server, (_req, res) => res.end());
  const front = createServer((s) => {
    s.setNoDelay(true);
    routeConnection(s, { http2: (c) => injector.injectConnection(c), http1: (c) => c.destroy() });
  });
  front.listen(0, '127.0.0.1', () =>
    process.send!({ port: (front.address() as { port: number }).port }),
  );
  process.on('message', () => process.send!({ cpu: process.cpuUsage() }));
}

function ask<T>(child: ChildProcess, key: string): Promise<T> {
  return new Promise((ok) => {
    const on = (m: Record<string, T>) => {
      if (key in m) {
        child.off('message', on);
        ok(m[key]!);
      }
    };
    child.on('message', on);
    if (key === 'cpu') child.send('cpu');
  });
}

async function measure(dispatch: boolean): Promise<number> {
  const child = fork(import.meta.filename, ['serve', dispatch ? '1' : '0'], {
    execArgv: ['--import', 'tsx'],
  });
  const port = await ask<number>(child, 'port');
  const clients = channels(port, 8);
  const req = Buffer.alloc(16);
  let calls = 0;
  let counting = false;
  let stop = false;
  const worker = async (w: number) => {
    while (!stop) {
      await unary(clients[w % clients.length]!, PATH, req);
      if (counting) calls++;
    }
  };
  const workers = Array.from({ length: 64 }, (_, w) => worker(w));
  await new Promise((r) => setTimeout(r, 1_000)); // warm-up
  const c0 = await ask<NodeJS.CpuUsage>(child, 'cpu');
  counting = true;
  await new Promise((r) => setTimeout(r, SECONDS * 1_000));
  counting = false;
  const c1 = await ask<NodeJS.CpuUsage>(child, 'cpu');
  stop = true;
  await Promise.all(workers);
  for (const c of clients) c.close();
  child.kill();
  return (c1.user + c1.system - c0.user - c0.system) / calls;
}

if (process.argv[2] === 'serve') await serve(process.argv[3] === '1');
else {
  const res: Record<'plain' | 'dispatch', number[]> = { plain: [], dispatch: [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [true, false] : [false, true];
    for (const d of order) res[d ? 'dispatch' : 'plain'].push(await measure(d));
    console.log(
      `round ${r + 1}: plain ${res.plain.at(-1)!.toFixed(1)} µs/call, dispatch ${res.dispatch.at(-1)!.toFixed(1)} µs/call`,
    );
  }
  console.log(
    `median server CPU per call: plain ${median(res.plain).toFixed(1)} µs, dispatch ${median(res.dispatch).toFixed(1)} µs`,
  );
}
