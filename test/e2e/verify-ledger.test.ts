import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Code, ConnectError } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import {
  ChainBreakKind,
  type VerifyLedgerStreamResponse,
} from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// VerifyLedger and VerifyLedgerStream over both transports and through the CLI; the break kinds themselves are
// covered one by one in test/integration/ledger-chain.test.ts.

let s: TestServer;
let env: NodeJS.ProcessEnv;
const cli = (...args: string[]) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { env });

beforeAll(async () => {
  s = await startTestServer();
  env = { ...process.env, QUOTA_URL: s.baseUrl };
  for (const subject of ['acme', 'globex']) {
    await s.connect.admin.setQuota({
      subject,
      metric: 'api_calls',
      period: Period.DAY,
      limit: 10n,
      reason: 'v',
    });
    for (let i = 0; i < 3; i++) {
      await s.connect.quota.consume({ subject, metric: 'api_calls', amount: 1n });
    }
  }
  // A checkpoint, as the reset scheduler's runs write.
  await s.connect.admin.triggerResetSweep({});
});
afterAll(() => s.close());

describe('VerifyLedger', () => {
  it('verifies an untampered ledger clean, over gRPC and Connect, and in the CLI', async () => {
    const viaConnect = await s.connect.admin.verifyLedger({});
    expect(viaConnect).toMatchObject({ subjectsChecked: 2n, eventsChecked: 8n, breaks: [] });
    expect(viaConnect.checkpointId).toBeGreaterThan(0n);
    const viaGrpc = await s.grpc.call(QuotaAdminService, QuotaAdminService.method.verifyLedger, {
      subject: 'acme',
    });
    expect(viaGrpc).toMatchObject({ subjectsChecked: 1n, eventsChecked: 4n, breaks: [] });
    expect((await cli('verify-ledger')).stdout).toMatch(
      /^2 subject\(s\), 8 event\(s\) checked, against checkpoint \d+ of .*: the chains hold$/m,
    );
  });

  it('names the field of a bad subject', async () => {
    const err = await s.connect.admin.verifyLedger({ subject: 'x'.repeat(1000) }).then(
      () => null,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toMatch(/^subject/);
  });

  it('reports an event changed by the owner, with exit status 1 from the CLI', async () => {
    const owner = await s.database.owner.connect();
    try {
      await owner.query('BEGIN');
      await owner.query('ALTER TABLE ledger_events DISABLE TRIGGER USER');
      await owner.query(
        "UPDATE ledger_events SET amount = 100 WHERE subject = 'globex' AND sequence = 3",
      );
      await owner.query('ALTER TABLE ledger_events ENABLE TRIGGER USER');
      await owner.query('COMMIT');
    } finally {
      owner.release();
    }
    const position = (
      await s.database.db.query<{ position: bigint }>(
        "SELECT position FROM ledger_events WHERE subject = 'globex' AND sequence = 3",
      )
    ).rows[0]!.position;
    const r = await s.connect.admin.verifyLedger({});
    expect(r.breaks.map((b) => [b.kind, b.subject, b.sequence, b.position])).toEqual([
      [ChainBreakKind.HASH_MISMATCH, 'globex', 3n, position],
    ]);
    const failed = await cli('verify-ledger').catch((e: { code: number; stdout: string }) => e);
    expect('code' in failed && failed.code).toBe(1);
    expect(failed.stdout).toMatch(new RegExp(`hash mismatch\\s+globex\\s+3\\s+${position}\\s`));
  });
});

// After the tests above: globex has a modified event, so the stream must report a break too.
describe('VerifyLedgerStream', () => {
  beforeAll(async () => {
    // 12 subjects in all: several progress messages at five subjects per message.
    for (let i = 0; i < 10; i++) {
      await s.connect.admin.setQuota({
        subject: `s-${String(i).padStart(2, '0')}`,
        metric: 'api_calls',
        period: Period.DAY,
        limit: 10n,
        reason: 'v',
      });
    }
  });

  const TRANSPORTS = {
    grpc: (req: { progressEverySubjects: number }) =>
      s.grpc.stream(QuotaAdminService, QuotaAdminService.method.verifyLedgerStream, req),
    connect: (req: { progressEverySubjects: number }) => s.connect.admin.verifyLedgerStream(req),
  };

  for (const [via, open] of Object.entries(TRANSPORTS)) {
    it(`sends progress, then the result VerifyLedger gives (${via})`, async () => {
      const unary = await s.connect.admin.verifyLedger({});
      expect(unary.subjectsChecked).toBe(12n);
      expect(unary.breaks).toHaveLength(1);
      const got: VerifyLedgerStreamResponse[] = [];
      for await (const m of open({ progressEverySubjects: 5 })) got.push(m);
      const last = got.pop()!;
      expect(last.item.case).toBe('result');
      expect(last.item.value).toEqual(unary);
      const progress = got.map((m) => {
        if (m.item.case !== 'progress') throw new Error(`not progress: ${m.item.case}`);
        return m.item.value;
      });
      // Every five subjects; more messages may come each second on a slow machine.
      const counts = progress.map((p) => p.subjectsChecked);
      expect(counts).toEqual(expect.arrayContaining([5n, 10n]));
      expect(counts).toEqual([...counts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
      const atTen = progress.find((p) => p.subjectsChecked === 10n)!;
      expect(atTen.breaksFound).toBe(1n);
      expect(atTen.eventsChecked).toBeGreaterThan(0n);
      expect(atTen.eventsChecked).toBeLessThan(unary.eventsChecked);
      expect(atTen.subject).toMatch(/^s-\d\d$/);
    });
  }

  it('refuses a progress pace out of bounds, naming the field', async () => {
    // The call must fail before its first message.
    const stream = s.connect.admin.verifyLedgerStream({ progressEverySubjects: -1 });
    const err = await stream[Symbol.asyncIterator]()
      .next()
      .then(
        () => null,
        (e: unknown) => ConnectError.from(e),
      );
    expect(err?.code).toBe(Code.InvalidArgument);
    expect(err?.rawMessage).toMatch(/^progress_every_subjects/);
  });

  it('the CLI prints progress to stderr with --progress, the result to stdout', async () => {
    const failed = await cli('verify-ledger', '--progress', '--progress-every', '5').catch(
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    expect('code' in failed && failed.code).toBe(1);
    expect(failed.stderr).toMatch(
      /^verifying: 5 subject\(s\), \d+ event\(s\), 1 break\(s\) so far; at \S+$/m,
    );
    expect(failed.stderr).toMatch(/^verifying: 10 subject\(s\)/m);
    expect(failed.stdout).toMatch(/^12 subject\(s\), \d+ event\(s\) checked, .*: 1 break\(s\)$/m);
    expect(failed.stdout).not.toMatch(/verifying/);
    // Not a terminal and no --progress: nothing on stderr.
    const quiet = await cli('verify-ledger').catch((e: { stderr: string }) => e);
    expect(quiet.stderr).toBe('');
  });
});
