import { createServer as createHttpServer } from 'node:http';
import { createServer as createTlsServer } from 'node:tls';
import {
  createServer as createNetServer,
  type Socket,
  type AddressInfo,
  type Server as NetServer,
} from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { systemClock, type Clock } from './domain/clock.js';
import { QuotaAdminService } from './gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from './gen/quota/v1/quota_service_pb.js';
import { QuotaReadBatcher } from './batching/read-batch.js';
import type { LedgerDeps } from './ledger/commands.js';
import { DEFAULT_STATE_CACHE_SUBJECTS } from './config.js';
import { SubjectCache } from './ledger/subject-cache.js';
import type { Db } from './ledger/db.js';
import { resetLagSeconds } from './ledger/reset-sweep.js';
import { feedHeldBack } from './ledger/list-events.js';
import { safeError } from './logger.js';
import { Metrics } from './metrics.js';
import { ConsumeGroupCommitter, type GroupCommitSettings } from './batching/group-commit.js';
import { ResetScheduler } from './scheduler/reset-scheduler.js';
import { DEFAULT_RESET, type ResetSettings } from './scheduler/settings.js';
import { adminServiceHandlers } from './rpc/admin-service.js';
import { callHooks, refusalRecorder } from './rpc/call-metrics.js';
import { headerValue } from './auth/header-reader.js';
import { Readiness } from './rpc/health.js';
import { addHealthToConnect, addHealthToGrpc } from './rpc/health-service.js';
import { quotaServiceHandlers } from './rpc/quota-service.js';
import { Reflection } from './rpc/reflection.js';
import {
  addConnectService,
  addGrpcService,
  grpcUnaryMethods,
  type Authenticator,
} from './rpc/transport.js';
import { mountService, type MountedService } from './rpc/mount.js';
import { createConnectHandler } from './transport/connect-adapter.js';
import { withCors } from './transport/cors.js';
import { routeConnection } from './transport/front-door.js';
import { DEFAULT_LIMITS, type ConnectionLimits } from './transport/limits.js';
import { createPreCheck } from './rpc/pre-check.js';
import { consoleHandler } from './transport/console.js';
import { httpEndpoints } from './transport/http-endpoints.js';
import { dispatchHttp2Streams } from './transport/h2-dispatch.js';
import { Http1Drain } from './transport/http1-drain.js';

export interface HostPort {
  host: string;
  port: number;
}

/** The largest request message on any transport. */
const MAX_MESSAGE_BYTES = 1 << 20;

export interface ServerOptions {
  db: Db;
  /** Where gRPC, Connect, gRPC-Web and the HTTP endpoints are served (port 0: any free port). */
  addr: HostPort;
  /** Serve TLS on `addr` (ALPN: h2 for every protocol, or http/1.1 for all but gRPC). */
  tls?: { cert: string | Buffer; key: string | Buffer } | null;
  /** Browser origins allowed to call (exact, or "*"); empty or unset: CORS off. */
  corsOrigins?: string[];
  /** Optional extra port where grpc-js listens directly, without the protocol sniffing. */
  grpcAddr?: HostPort | null;
  clock?: Clock;
  logger?: Logger;
  /** Who is calling; by default everyone is "anonymous" (auth off). */
  authenticate?: Authenticator;
  /** A server span per call, for OpenTelemetry (src/main.ts: when OTEL_* asks for traces). */
  tracing?: boolean;
  /** How long in-flight calls may take to finish on close. */
  drainTimeoutMs?: number;
  /** The reset scheduler; by default off (TriggerResetSweep still works). */
  reset?: Partial<ResetSettings>;
  /** How Consume calls are gathered into transactions. */
  groupCommit?: Partial<GroupCommitSettings>;
  /** Subjects whose state Consume keeps to decide the next call without a read; 0 is off. */
  stateCacheSubjects?: number;
  /** What a peer may cost before authentication (timeouts, connection and stream caps). */
  limits?: Partial<ConnectionLimits>;
  /** Serve the web console at / and /console/ (QUOTA_CONSOLE); by default on. */
  console?: boolean;
  /** Ledger events per page of a backtest replay; tests make it small to get several pages. */
  backtestPageSize?: number;
}

export interface QuotaServer {
  listen(): Promise<{ addr: HostPort; grpcAddr: HostPort | null }>;
  /** Stops taking calls, lets in-flight ones finish (bounded), then closes the sockets. */
  close(): Promise<void>;
  readonly readiness: Readiness;
  readonly deps: LedgerDeps;
  readonly scheduler: ResetScheduler;
  readonly metrics: Metrics;
}

/** Builds the service, unstarted. */
export function createQuotaServer(o: ServerOptions): QuotaServer {
  const log = o.logger ?? pino({ level: 'silent' });
  const clock = o.clock ?? systemClock;
  const reset: ResetSettings = { ...DEFAULT_RESET, ...o.reset };
  const metrics = new Metrics({ resetLagSeconds: () => resetLagSeconds(o.db, clock.now()) });
  const observer = metrics.dbObserver;
  const deps: LedgerDeps = {
    db: o.db,
    clock,
    observer,
    reader: new QuotaReadBatcher({ db: o.db, observer }),
  };
  const cacheSize = o.stateCacheSubjects ?? DEFAULT_STATE_CACHE_SUBJECTS;
  if (cacheSize > 0) deps.cache = new SubjectCache(cacheSize);
  metrics.watchReservations(o.db, () => deps.clock.now());
  metrics.watchPool(o.db);
  metrics.watchFeed(() => feedHeldBack(o.db));
  const scheduler = new ResetScheduler({
    ...reset,
    db: o.db,
    observer,
    clock: deps.clock,
    logger: log,
    metrics,
  });
  const committer = new ConsumeGroupCommitter(deps, o.groupCommit, metrics.groupCommitObserver);
  const services: MountedService[] = [
    mountService(
      QuotaService,
      quotaServiceHandlers(deps, {
        consumer: committer,
        metrics,
        onInternalError: (err) => log.error({ err: safeError(err) }, 'batch item failed'),
      }),
    ),
    mountService(
      QuotaAdminService,
      adminServiceHandlers(deps, scheduler, { backtestPageSize: o.backtestPageSize }),
    ),
  ];
  const hooks = callHooks(metrics, log, o.authenticate, o.tracing ?? false);
  const readiness = new Readiness(
    o.db,
    services.map((s) => s.desc.typeName),
    (up) => metrics.dbUp.set(up ? 1 : 0),
  );

  const limits: ConnectionLimits = { ...DEFAULT_LIMITS, ...o.limits };
  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_concurrent_streams': limits.http2MaxStreams,
    'grpc.max_connection_idle_ms': limits.idleTimeoutMs,
    'grpc-node.max_session_memory': limits.http2MaxSessionMemoryMb,
    // Nothing here serves channelz, and its bookkeeping (trackers, timestamps, closures) is
    // paid on every call.
    'grpc.enable_channelz': 0,
  });
  for (const s of services) addGrpcService(grpcServer, s, hooks);
  addHealthToGrpc(grpcServer, readiness);
  const reflection = new Reflection(services.map((s) => s.desc));
  reflection.addToGrpc(grpcServer);
  const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());

  // Everything that is not plain gRPC: Connect, gRPC-Web, the health and reflection services
  // for those protocols, and the HTTP endpoints.
  const corsOrigins = o.corsOrigins ?? [];
  const preCheck = createPreCheck({
    services: services.map((x) => x.desc),
    authenticate: o.authenticate ?? null,
    corsAllows: (origin) => corsOrigins.includes('*') || corsOrigins.includes(origin),
  });
  const refused = refusalRecorder(
    metrics,
    log,
    services.map((x) => x.desc),
  );
  const connect = withCors(
    corsOrigins,
    createConnectHandler({
      preCheck,
      onRefused: (path, code) => refused(path, 'connect', code),
      routes: (router) => {
        for (const s of services) addConnectService(router, s, hooks);
        addHealthToConnect(router, readiness);
        reflection.addToConnect(router);
      },
      readMaxBytes: MAX_MESSAGE_BYTES,
      // Proto3 JSON, strictly: a misspelled field or enum name is refused, never dropped (a
      // dropped "mode" would charge a call meant as a dry run).
      jsonOptions: { ignoreUnknownFields: false },
      fallback: httpEndpoints(metrics, readiness, o.console === false ? null : consoleHandler()),
    }),
  );
  // HTTP/2 connections belong to grpc-js; streams that are not plain gRPC come back here.
  // Unary gRPC calls are answered from the stream (src/transport/grpc-unary.ts); grpc-js
  // serves the streaming methods, health, reflection and compressed requests.
  const unary = {
    methods: new Map(services.flatMap((s) => [...grpcUnaryMethods(s, hooks)])),
    maxBytes: MAX_MESSAGE_BYTES,
  };
  dispatchHttp2Streams(
    grpcServer,
    connect,
    (headers) => {
      const path = String(headers[':path'] ?? '');
      const r = preCheck(path, headers[':authority'], (name) => headerValue(headers, name));
      if (r) refused(path, 'grpc', r.code);
      return r;
    },
    unary,
  );
  const drain = new Http1Drain({
    idleMs: limits.idleTimeoutMs,
    headersMs: limits.http1HeadersTimeoutMs,
    requestMs: limits.http1RequestTimeoutMs,
  });
  const http1 = createHttpServer({ keepAliveTimeout: 5_000 }, drain.wrap(connect));
  // Connections are timed out by Http1Drain only while idle, never during a call.
  http1.timeout = 0;

  const toHttp1 = (s: Socket) => {
    drain.adopt(s);
    http1.emit('connection', s);
  };
  // An HTTP/2 client must send its preface and SETTINGS (24 + 9 bytes at least) in time; a
  // connection that stalls inside them never becomes a session grpc-js could time out.
  const toHttp2 = (socket: Socket) => {
    injector.injectConnection(socket);
    const t = setTimeout(() => {
      if (socket.bytesRead < 33) socket.destroy();
    }, limits.handshakeTimeoutMs);
    t.unref();
    socket.once('close', () => clearTimeout(t));
  };
  // Cleartext: sniff the first bytes. TLS: ALPN has already said which protocol it is.
  const front: NetServer = o.tls
    ? createTlsServer(
        {
          cert: o.tls.cert,
          key: o.tls.key,
          ALPNProtocols: ['h2', 'http/1.1'],
          handshakeTimeout: limits.handshakeTimeoutMs,
        },
        (socket) => {
          socket.on('error', () => socket.destroy());
          socket.setNoDelay(true);
          if (socket.alpnProtocol === 'h2') toHttp2(socket);
          else toHttp1(socket);
        },
      ).on('tlsClientError', () => {})
    : createNetServer((socket) => {
        socket.on('error', () => socket.destroy());
        routeConnection(socket, { http2: toHttp2, http1: toHttp1 }, limits.handshakeTimeoutMs);
      });
  // Past this many connections, new ones are closed at once (before any byte is read).
  front.maxConnections = limits.maxConnections;

  let grpcPort: number | null = null;
  return {
    readiness,
    deps,
    scheduler,
    metrics,
    async listen() {
      await new Promise<void>((ok, fail) => {
        front.once('error', fail);
        front.listen(o.addr.port, o.addr.host, () => ok());
      });
      if (o.grpcAddr) {
        const creds = o.tls
          ? grpc.ServerCredentials.createSsl(null, [
              { cert_chain: Buffer.from(o.tls.cert), private_key: Buffer.from(o.tls.key) },
            ])
          : grpc.ServerCredentials.createInsecure();
        grpcPort = await new Promise<number>((ok, fail) =>
          grpcServer.bindAsync(`${o.grpcAddr!.host}:${o.grpcAddr!.port}`, creds, (err, port) =>
            err ? fail(err) : ok(port),
          ),
        );
      }
      readiness.start();
      if (reset.enabled) scheduler.start();
      const a = front.address() as AddressInfo;
      return {
        addr: { host: a.address, port: a.port },
        grpcAddr:
          o.grpcAddr && grpcPort !== null ? { host: o.grpcAddr.host, port: grpcPort } : null,
      };
    },
    async close() {
      // Not ready first, so load balancers stop sending; then the scheduler (a running sweep
      // finishes its batch) and the calls in flight wind down together.
      readiness.drain();
      const schedulerDone = scheduler.stop();
      front.close();
      const timeout = o.drainTimeoutMs ?? 10_000;
      const grpcDone = new Promise<void>((ok) => grpcServer.tryShutdown(() => ok()));
      const httpDone = drain.drain();
      let timer: NodeJS.Timeout | undefined;
      const forced = new Promise<void>((ok) => {
        timer = setTimeout(() => {
          grpcServer.forceShutdown();
          drain.destroyAll();
          ok();
        }, timeout);
      });
      await Promise.race([Promise.all([grpcDone, httpDone]), forced]);
      clearTimeout(timer);
      injector.destroy();
      // Calls already taken are committed and answered before the pool may be closed.
      await committer.idle();
      await schedulerDone;
    },
  };
}
