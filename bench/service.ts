// The service under benchmark: a real `src/main.ts` process, and grpc-js channels to it.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { ConsumeBatchRequestSchema } from '../src/gen/quota/v1/quota_service_pb.js';
import { startService as startProcess } from '../test/support/process.js';

export interface ServiceUnderTest {
  child: ChildProcess;
  port: number;
  stop(): Promise<number | null>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as { port: number }).port;
  await new Promise((ok) => s.close(ok));
  return port;
}

/** Starts the service on a free loopback port; `cpuProfDir` adds --cpu-prof. */
export async function startService(
  databaseUrl: string,
  cpuProfDir: string | null,
  env: Record<string, string> = {},
): Promise<ServiceUnderTest> {
  const port = await freePort();
  const service = await startProcess(
    { DATABASE_URL: databaseUrl, QUOTA_ADDR: `127.0.0.1:${port}`, LOG_LEVEL: 'info', ...env },
    [
      // BENCH_NODE_FLAGS: extra flags for the service's node, e.g. V8 heap sizes to compare.
      ...(process.env.BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? []),
      ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
    ],
    // BENCH_DIST=1: the service as `npm run start:dist` runs it (bench/run.ts builds it first).
    process.env.BENCH_DIST === '1' ? 'dist/main.js' : 'src/main.ts',
  );
  return {
    child: service.child,
    port,
    async stop() {
      service.child.kill('SIGTERM');
      const code = await service.exited;
      // BENCH_SERVICE_OUTPUT: a file for what the service wrote, e.g. with
      // BENCH_NODE_FLAGS="--trace-opt --trace-deopt" to see what V8 compiles under load.
      const out = process.env.BENCH_SERVICE_OUTPUT;
      if (out) writeFileSync(out, service.output());
      return code;
    },
  };
}

/** A reference server (bench/reference-server.ts) on a free loopback port. */
export async function startReference(
  mode: 'noop' | 'insert',
  databaseUrl: string,
): Promise<ServiceUnderTest> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bench/reference-server.ts', mode, String(port), databaseUrl],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
  await new Promise<void>((ok, fail) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && ok());
    child.once('exit', (code) => fail(new Error(`reference server ${mode} exited (${code})`)));
  });
  return {
    child,
    port,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** `n` separate HTTP/2 connections (grpc-js would otherwise share one between clients). */
export function channels(port: number, n: number): grpc.Client[] {
  return Array.from(
    { length: n },
    () =>
      new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1,
      }),
  );
}

const identity = (b: Buffer): Buffer => b;

/** One unary call with an already-encoded request; resolves to the encoded answer. */
export function unary(client: grpc.Client, path: string, request: Buffer): Promise<Buffer> {
  return new Promise((ok, fail) =>
    client.makeUnaryRequest(
      path,
      identity,
      identity,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + 30_000 },
      (err, res) => (err ? fail(err) : ok(res!)),
    ),
  );
}

/**
 * One usage of `metric` for every subject, through the service (ConsumeBatch calls of 1,000),
 * before measuring: the baseline starts with a counter row per subject, so the service gets
 * its subject and counter rows too.
 */
export async function prefill(
  port: number,
  subjects: string[],
  metric = 'requests',
): Promise<void> {
  const [conn] = channels(port, 1);
  for (let i = 0; i < subjects.length; i += 1000) {
    const items = subjects.slice(i, i + 1000).map((subject) => ({ subject, metric, amount: 1n }));
    const req = create(ConsumeBatchRequestSchema, { items });
    await unary(
      conn!,
      '/quota.v1.QuotaService/ConsumeBatch',
      Buffer.from(toBinary(ConsumeBatchRequestSchema, req)),
    );
  }
  conn!.close();
}
