#!/usr/bin/env node
// The operator CLI: npm run quota -- <command>. Key management works on the keys file
// directly; the other commands call the service (QUOTA_URL, QUOTA_API_KEY).
import { parseArgs } from 'node:util';
import { createKey, listKeys, revokeKey } from '../auth/key-file.js';
import { backtest } from './backtest.js';
import {
  cliClient,
  events,
  reset,
  runs,
  schedulerStatus,
  status,
  verify,
  verifyLedger,
} from './ops.js';
import { table } from './table.js';

const USAGE = `usage: npm run quota -- <command>

  status                                      the reset scheduler: enabled, schedule, next run, last run
  status SUBJECT [--metric M]                 every quota of a subject: used, limit, when it resets
  reset SUBJECT --reason TEXT [--metric M] [--period DAY|WEEK|MONTH|NEVER]
  reset --all --reason TEXT [--metric M] [--period P]   every subject's matching quotas
  events [--subject S] [--metric M] [--type USAGE ...] [--limit N] [--follow]
                                              the newest ledger events; --follow keeps printing new ones
  runs [--limit N]                            the reset scheduler's run history, newest first
  verify [--subject S]                        fold the ledger and compare every counter with it
                                              (exit status 1 when something differs)
  rebuild [--subject S]                       rewrite the counters that differ from the ledger
  backtest METRIC --quota PERIOD:LIMIT[:ZONE[:ANCHOR]] ... --from ISO [--to ISO] [--subject S]
           [--progress]                       replay recorded usage against proposed quotas: whom
                                              they would have refused (every subject unless --subject);
                                              progress lines on stderr when it is a terminal or
                                              with --progress
  verify-ledger [--subject S] [--progress] [--progress-every N]
                                              recompute the ledger's hash chains, check the checkpoint
                                              (exit status 1 on any break: modified, deleted, cut);
                                              progress lines go to stderr when it is a terminal or
                                              with --progress: every N subjects (1000) and every second

  keys create NAME --role consumer|reader|admin [--file PATH]
             [--subject S ...] [--subject-prefix P]
        make a new API key, print it once, store only its SHA-256 in the keys file;
        --subject / --subject-prefix limit it to those subjects (default: every subject)
  keys list [--file PATH]
  keys revoke NAME [--file PATH]

Service commands talk to $QUOTA_URL (default http://127.0.0.1:50051) with $QUOTA_API_KEY.
The keys file is --file, else $QUOTA_API_KEYS_FILE, else ./quota-keys.json; the server
reloads it when it changes (or on SIGHUP).`;

async function keys(
  command: string | undefined,
  name: string | undefined,
  role: string | undefined,
  file: string,
  scope: { subjects?: string[]; subjectPrefix?: string },
): Promise<number> {
  switch (command) {
    case 'create': {
      if (!name || !role) throw new Error('keys create needs a NAME and --role');
      const key = await createKey(file, name, role, scope);
      process.stderr.write(
        `created key "${name}" (${role}) in ${file}; it is shown once, store it now:\n`,
      );
      process.stdout.write(key + '\n');
      return 0;
    }
    case 'list': {
      const rows = (await listKeys(file)).map((k) => [k.name, k.role, k.created_at ?? '']);
      process.stdout.write(table(['NAME', 'ROLE', 'CREATED'], rows) + '\n');
      return 0;
    }
    case 'revoke':
      if (!name) throw new Error('keys revoke needs a NAME');
      await revokeKey(file, name);
      process.stderr.write(`revoked "${name}"\n`);
      return 0;
    default:
      process.stdout.write(USAGE + '\n');
      return 2;
  }
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      role: { type: 'string' },
      file: { type: 'string' },
      metric: { type: 'string' },
      period: { type: 'string' },
      reason: { type: 'string' },
      subject: { type: 'string', multiple: true },
      'subject-prefix': { type: 'string' },
      type: { type: 'string', multiple: true },
      limit: { type: 'string' },
      all: { type: 'boolean' },
      follow: { type: 'boolean', short: 'f' },
      quota: { type: 'string', multiple: true },
      from: { type: 'string' },
      to: { type: 'string' },
      progress: { type: 'boolean' },
      'progress-every': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, arg1, arg2] = positionals;
  if (values.help || !command) {
    process.stdout.write(USAGE + '\n');
    return values.help ? 0 : 2;
  }
  // --subject may repeat for keys create; the service commands take one (the last).
  const flags = {
    ...values,
    subject: values.subject?.at(-1),
    progressEvery: values['progress-every'],
  };
  const out = (text: string) => process.stdout.write(text.endsWith('\n') ? text : text + '\n');
  switch (command) {
    case 'keys':
      return keys(
        arg1,
        arg2,
        values.role,
        values.file ?? process.env.QUOTA_API_KEYS_FILE ?? 'quota-keys.json',
        { subjects: values.subject, subjectPrefix: values['subject-prefix'] },
      );
    case 'status':
      out(arg1 ? await status(cliClient(), arg1, flags) : await schedulerStatus(cliClient()));
      return 0;
    case 'reset':
      out(await reset(cliClient(), arg1, flags));
      return 0;
    case 'events': {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      await events(cliClient(), flags, (t) => process.stdout.write(t), stop.signal);
      return 0;
    }
    case 'runs':
      out(await runs(cliClient(), flags));
      return 0;
    case 'verify':
    case 'rebuild': {
      const r = await verify(cliClient(), flags, command === 'rebuild');
      out(r.text);
      return r.clean ? 0 : 1;
    }
    case 'backtest': {
      // Progress is for a person watching; a pipe or a log gets it only when asked for.
      const progress =
        values.progress || process.stderr.isTTY
          ? (line: string) => process.stderr.write(line + '\n')
          : undefined;
      out(await backtest(cliClient(), arg1, flags, progress));
      return 0;
    }
    case 'verify-ledger': {
      // Progress is for a person watching; a script that captures stderr asks for it.
      const progress = values.progress || process.stderr.isTTY;
      const r = await verifyLedger(
        cliClient(),
        flags,
        progress ? (line) => process.stderr.write(line + '\n') : undefined,
      );
      out(r.text);
      return r.clean ? 0 : 1;
    }
    default:
      process.stdout.write(USAGE + '\n');
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`error: ${msg}\n`);
    process.exit(1);
  },
);
