// What the service's RPC layer costs beside a grpc-js server that answers at once, without the
// database's noise: `npm run build && npx tsx bench/shell.ts` runs bench/shell-server.mjs in
// each mode in turn, drives it with the same grpc-js load generator, and prints the server's
// CPU per Consume, round by round and as medians. Settings: BENCH_MODES (noop,shell; a mode
// may name another build's directory, e.g. shell@dist-old for a build of an earlier commit),
// BENCH_RATE (calls/s, open loop, default 2,000; 0: 64 callers as fast as they go),
// BENCH_ROUNDS (6), BENCH_SECONDS (4), BENCH_NODE_FLAGS (for the server), DATABASE_URL (the shell's server needs one to start).
// At a fixed rate both servers batch their socket writes alike, so their CPU per call compare;
// as fast as they go, the faster server also gets fewer calls per write.
import { fork, type ChildProcess } from 'node:child_process';
import { create, toBinary } from '@bufbuild/protobuf';
import { ConsumeRequestSchema } from '../src/gen/quota/v1/quota_service_pb.js';
import { median } from './load.js';
import { channels, unary } from './service.js';

const MODES = (process.env.BENCH_MODES ?? 'noop,shell').split(',');
const RATE = Number(process.env.BENCH_RATE ?? 2_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 6);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONSUME = '/quota.v1.QuotaService/Consume';
const MAX_IN_FLIGHT = 256;
// Flags for the server process, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" for a profile.
const NODE_FLAGS = process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];

const requests = Array.from({ length: 1_000 }, (_, i) =>
  Buffer.from(
    toBinary(
      ConsumeRequestSchema,
      create(ConsumeRequestSchema, { subject: `tenant-${i}`, metric: 'requests', amount: 1n }),
    ),
  ),
);

function ask<T>(child: ChildProcess, key: 'port' | 'cpu'): Promise<T> {
  return new Promise((ok) => {
    const on = (m: Record<string, T>) => {
      if (!(key in m)) return;
      child.off('message', on);
      ok(m[key]!);
    };
    child.on('message', on);
    if (key === 'cpu') child.send('cpu');
  });
}

/** Server CPU µs per call, and calls/s, of one mode over BENCH_SECONDS after 2 s of warm-up. */
async function measure(mode: string): Promise<{ cpu: number; rate: number }> {
  const child = fork(new URL('./shell-server.mjs', import.meta.url).pathname, mode.split('@'), {
    execArgv: NODE_FLAGS,
  });
  const port = await ask<number>(child, 'port');
  const clients = channels(port, 4);
  let sent = 0;
  let inFlight = 0;
  let answered = 0;
  let stop = false;
  const call = async () => {
    const n = sent++;
    inFlight++;
    await unary(clients[n % clients.length]!, CONSUME, requests[n % requests.length]!);
    inFlight--;
    answered++;
  };
  // Open loop: a tick every 5 ms sends its share of the rate (bounded, should the server lag).
  const ticker = RATE
    ? setInterval(() => {
        for (let k = 0; k < (RATE * 5) / 1_000 && inFlight < MAX_IN_FLIGHT; k++) void call();
      }, 5)
    : null;
  const callers = RATE
    ? []
    : Array.from({ length: 64 }, async () => {
        while (!stop) await call();
      });
  await new Promise((r) => setTimeout(r, 2_000));
  const [c0, a0, t0] = [await ask<NodeJS.CpuUsage>(child, 'cpu'), answered, performance.now()];
  await new Promise((r) => setTimeout(r, SECONDS * 1_000));
  const [c1, a1, t1] = [await ask<NodeJS.CpuUsage>(child, 'cpu'), answered, performance.now()];
  stop = true;
  if (ticker) clearInterval(ticker);
  await Promise.all(callers);
  while (inFlight > 0) await new Promise((r) => setTimeout(r, 10));
  for (const c of clients) c.close();
  child.send('exit');
  await new Promise((ok) => child.once('exit', ok));
  const calls = a1 - a0;
  return {
    cpu: (c1.user + c1.system - c0.user - c0.system) / calls,
    rate: (calls * 1_000) / (t1 - t0),
  };
}

const cpu: Record<string, number[]> = {};
for (let r = 0; r < ROUNDS; r++) {
  // Alternating order, so that neither mode always meets the machine's same minute.
  const order = r % 2 ? [...MODES].reverse() : MODES;
  const line: string[] = [];
  for (const mode of order) {
    const m = await measure(mode);
    (cpu[mode] ??= []).push(m.cpu);
    line.push(`${mode} ${m.cpu.toFixed(1)} µs/call (${m.rate.toFixed(0)} calls/s)`);
  }
  console.log(`round ${r + 1}: ${line.join(', ')}`);
}
console.log(
  `median server CPU per call: ${MODES.map((m) => `${m} ${median(cpu[m]!).toFixed(1)} µs`).join(', ')}`,
);
