// CPU time and memory of processes, read from /proc (Linux), for `npm run bench`.
import { readdirSync, readFileSync } from 'node:fs';

// USER_HZ: the unit of utime/stime in /proc/<pid>/stat. 100 on every Linux platform Node
// supports in practice; `getconf CLK_TCK` prints it.
const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) a process has used so far; null where /proc is unavailable. */
export function cpuSeconds(pid: number): number | null {
  const t = cpuTimes(pid);
  return t === null ? null : t.user + t.system;
}

/**
 * CPU seconds in user space and in the kernel (system calls, loopback TCP) so far, and those of
 * its children that have ended (and been waited for).
 */
export function cpuTimes(
  pid: number,
): { user: number; system: number; endedChildren: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may hold spaces; the fields after its closing parenthesis are plain.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      user: Number(fields[11]) / TICKS_PER_SECOND,
      system: Number(fields[12]) / TICKS_PER_SECOND,
      endedChildren: (Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND,
    };
  } catch {
    return null;
  }
}

/** Resident memory in bytes. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Total CPU seconds of every process named `postgres` on this machine (the database), counting
 * backends that have ended: the postmaster has waited for them, so their time is in its
 * children's. (Without that, a pool closing an idle connection mid-phase lost its time.)
 */
export function postgresCpuSeconds(): number | null {
  let total = 0;
  let found = false;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return null;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, 'utf8').trim() !== 'postgres') continue;
      const t = cpuTimes(Number(e));
      if (t !== null) {
        total += t.user + t.system + t.endedChildren;
        found = true;
      }
    } catch {
      // The process ended while we looked.
    }
  }
  return found ? total : null;
}

/** Samples a process's RSS every 200 ms until stopped; returns the peak. */
export function watchRss(pid: number): { stop(): number | null } {
  let peak: number | null = rssBytes(pid);
  const timer = setInterval(() => {
    const r = rssBytes(pid);
    if (r !== null && (peak === null || r > peak)) peak = r;
  }, 200);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

/**
 * The service's group-commit totals so far (`quota_group_commit_calls` from /metrics): calls
 * and transactions that committed, and the seconds transactions took. Null for a server
 * without those metrics (the references).
 */
export async function groupCommitTotals(
  port: number,
): Promise<{ calls: number; flushes: number; seconds: number } | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const read = (name: string, labels = '{outcome="commit"}') =>
      Number(
        new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0,
      );
    if (!text.includes('quota_group_commit_calls')) return null;
    return {
      calls: read('quota_group_commit_calls_sum'),
      flushes: read('quota_group_commit_calls_count'),
      // Of every transaction, committed or not (the duration has no outcome label).
      seconds: read('quota_group_commit_duration_seconds_sum', ''),
    };
  } catch {
    return null;
  }
}
