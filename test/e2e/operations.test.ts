import { execFile, execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { Period } from '../../src/gen/quota/v1/types_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';

// The operations kit must match the service: every metric the alert rules and the dashboard
// use is really exported, promtool finds the exposition clean and the rules' unit tests pass.

const root = new URL('../../', import.meta.url);
const promtool = (() => {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
// .ci/run installs promtool (Debian's prometheus package) where it can and then sets this, so a
// promtool that went missing fails the run instead of skipping. Without promtool and without
// the flag (a machine with only Node and npm) the tests are skipped under a name that says so.
const promtoolRequired = process.env.QUOTA_REQUIRE_PROMTOOL === '1';
const withPromtool = promtool || promtoolRequired;
const needPromtool = (): void => {
  if (!promtool) {
    throw new Error(
      'QUOTA_REQUIRE_PROMTOOL=1 but promtool is not on PATH: install it (Debian: apt-get install prometheus)',
    );
  }
};

let s: TestServer;
let exposition: string;

beforeAll(async () => {
  s = await startTestServer();
  // Touch every family so each has samples, not just its HELP and TYPE lines.
  await s.connect.admin.setQuota({
    subject: 'acme',
    metric: 'api_calls',
    period: Period.DAY,
    limit: 1n,
  });
  await s.connect.quota.consume({ subject: 'acme', metric: 'api_calls', amount: 1n });
  await s.connect.quota.consume({ subject: 'acme', metric: 'api_calls', amount: 1n });
  await s.connect.admin.triggerResetSweep({});
  await s.server.readiness.check();
  exposition = await (await fetch(`${s.baseUrl}/metrics`)).text();
});
afterAll(() => s.close());

/** Metric families named in PromQL, with histogram and summary suffixes folded away. */
function metricsIn(exprs: string[]): Set<string> {
  const names = new Set<string>();
  for (const e of exprs) {
    for (const m of e.matchAll(/\b(quota_[a-z0-9_]+)/g))
      names.add(m[1]!.replace(/_(bucket|sum|count)$/, ''));
  }
  return names;
}

const exported = (): Set<string> =>
  new Set([...exposition.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));

describe('operations kit', () => {
  it('exports every metric the alert rules use', async () => {
    const rules = parse(await readFile(new URL('ops/prometheus/alerts.yml', root), 'utf8')) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const exprs = rules.groups.flatMap((g) => g.rules.map((r) => r.expr));
    expect(exprs.length).toBeGreaterThanOrEqual(7);
    const used = metricsIn(exprs);
    expect([...used].filter((m) => !exported().has(m))).toEqual([]);
  });

  it('exports every metric the Grafana dashboard uses', async () => {
    const dash = JSON.parse(
      await readFile(new URL('ops/grafana/quota-service.json', root), 'utf8'),
    ) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(8);
    expect([...metricsIn(exprs)].filter((m) => !exported().has(m))).toEqual([]);
  });

  it('never labels a metric with a subject', () => {
    expect(exposition).not.toMatch(/subject="/);
    expect(exposition).not.toContain('acme');
  });

  it.skipIf(withPromtool)('says out loud that the promtool tests are skipped', () => {
    console.warn(
      'SKIPPED: the promtool tests (promtool is not installed; Debian: apt-get install prometheus; QUOTA_REQUIRE_PROMTOOL=1 makes this a failure)',
    );
  });

  it.runIf(withPromtool)('passes promtool check metrics', async () => {
    needPromtool();
    const child = execFile('promtool', ['check', 'metrics']);
    const out: string[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d.toString()));
    child.stderr!.on('data', (d: Buffer) => out.push(d.toString()));
    child.stdin!.end(exposition);
    const code = await new Promise<number | null>((ok) => child.on('close', ok));
    expect(out.join('').trim()).toBe('');
    expect(code).toBe(0);
  });

  it.runIf(withPromtool)('passes promtool test rules', async () => {
    needPromtool();
    const dir = new URL('ops/prometheus/', root).pathname;
    const { stdout } = await promisify(execFile)('promtool', ['test', 'rules', 'alerts.test.yml'], {
      cwd: dir,
    });
    expect(stdout).toMatch(/SUCCESS/);
  });
});
