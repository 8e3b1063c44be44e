import schedule from 'node-schedule';

/** How the reset scheduler runs: read from the environment (config), used by the server. */
export interface ResetSettings {
  /** Run the boundary timer, the cron sweep and the start-up catch-up. */
  enabled: boolean;
  /** Cron expression of the safety-net sweep. */
  cron: string;
  /** The IANA zone the cron expression is read in. */
  timeZone: string;
  replicaId: string;
  maxAttempts: number;
  retryBaseMs: number;
  batchSize: number;
}

export const DEFAULT_RESET: ResetSettings = {
  enabled: false,
  cron: '*/5 * * * *',
  timeZone: 'UTC',
  replicaId: `${process.pid}`,
  maxAttempts: 3,
  retryBaseMs: 5_000,
  batchSize: 5_000,
};

/** Whether node-schedule accepts a cron expression (in a zone). */
export function isValidCron(expr: string, timeZone = 'UTC'): boolean {
  const job = schedule.scheduleJob({ rule: expr, tz: timeZone }, () => {});
  if (!job) return false;
  job.cancel();
  return true;
}
