// The operator CLI: npm run quota -- <command>. Key management works on the keys file
// directly; it never needs the server.
import { parseArgs } from 'node:util';
import { createKey, listKeys, revokeKey } from './auth/key-file.js';

const USAGE = `usage: npm run quota -- <command>

  keys create NAME --role consumer|reader|admin [--file PATH]
        make a new API key, print it once, store only its SHA-256 in the keys file
  keys list [--file PATH]
  keys revoke NAME [--file PATH]

The keys file is --file, else $QUOTA_API_KEYS_FILE, else ./quota-keys.json.
The server reloads it when it changes (or on SIGHUP).`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      role: { type: 'string' },
      file: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [group, command, name] = positionals;
  const file = values.file ?? process.env.QUOTA_API_KEYS_FILE ?? 'quota-keys.json';
  if (values.help || group !== 'keys') {
    process.stdout.write(USAGE + '\n');
    return values.help ? 0 : 2;
  }
  switch (command) {
    case 'create': {
      if (!name || !values.role) throw new Error('keys create needs a NAME and --role');
      const key = await createKey(file, name, values.role);
      process.stderr.write(
        `created key "${name}" (${values.role}) in ${file}; it is shown once, store it now:\n`,
      );
      process.stdout.write(key + '\n');
      return 0;
    }
    case 'list': {
      const keys = await listKeys(file);
      const rows = keys.map((k) => [k.name, k.role, k.created_at ?? '']);
      const widths = [4, 4, 7].map((w, i) => Math.max(w, ...rows.map((r) => r[i]!.length)));
      const line = (r: string[]) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd();
      process.stdout.write(
        [line(['NAME', 'ROLE', 'CREATED']), ...rows.map(line)].join('\n') + '\n',
      );
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

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
