import { existsSync, unwatchFile, watchFile, type BigIntStats } from 'node:fs';
import { chmod, chown, link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import type { Logger } from 'pino';
import {
  generateKey,
  hashKey,
  parseKeyFile,
  readKeyFile,
  ROLES,
  type KeyFile,
  type KeyStore,
  type Role,
} from './api-keys.js';
import { isAlive } from '../process-alive.js';

/**
 * Keeps a KeyStore in step with its file: reloaded when the file changes and on SIGHUP. A
 * file that no longer parses is reported and ignored, so a typo never locks everyone out.
 */
export function watchKeyFile(path: string, store: KeyStore, log: Logger): () => void {
  const reload = (why: string) => {
    try {
      store.replace(readKeyFile(path));
      log.info({ keys: store.size, why }, 'API keys reloaded');
    } catch (err) {
      log.error(
        { err: err instanceof Error ? err.message : String(err), keys: store.size },
        'API keys file rejected; keeping the keys in force',
      );
    }
  };
  const onChange = () => reload('file changed');
  const onHup = () => reload('SIGHUP');
  watchFile(path, { interval: 1000 }, onChange);
  process.on('SIGHUP', onHup);
  return () => {
    unwatchFile(path, onChange);
    process.off('SIGHUP', onHup);
  };
}

async function load(path: string): Promise<KeyFile> {
  return existsSync(path) ? parseKeyFile(await readFile(path, 'utf8'), path) : { keys: [] };
}

/**
 * Writes the whole file at once (temporary file, flushed, then renamed over the old one). A
 * new file is readable by its owner only; an existing one keeps its owner and mode, so the
 * service can still read it after an operator edits it as another user.
 */
async function save(path: string, file: KeyFile): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const old = await stat(path).catch(() => null);
  const handle = await open(tmp, 'w', old ? old.mode & 0o777 : 0o600);
  try {
    await handle.writeFile(JSON.stringify(file, null, 2) + '\n');
    await handle.sync();
  } finally {
    await handle.close();
  }
  if (old) {
    await chmod(tmp, old.mode & 0o777);
    if (process.getuid?.() === 0) await chown(tmp, old.uid, old.gid);
  }
  await rename(tmp, path);
}

/**
 * Runs a read-modify-write of the keys file under an exclusive lock file beside it (created
 * with O_EXCL), so two operators editing at once both land. A lock left by a process that no
 * longer exists is taken over; a live one is waited for, up to 10 s.
 */
async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${path}.lock`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const h = await open(lock, 'wx', 0o600);
      await h.writeFile(String(process.pid));
      await h.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const { again, holder } = await removeStaleLock(lock);
      if (Date.now() > deadline)
        throw new Error(`${lock} is held by process ${holder || '?'}; try again, or remove it`);
      if (!again) await new Promise((r) => setTimeout(r, 20 + Math.random() * 30));
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(lock).catch(() => {});
  }
}

type FileId = { ino: bigint; ctimeNs: bigint };
/** What tells one lock file from a later one at the same path (inode numbers are reused). */
const identity = (s: BigIntStats): FileId => ({ ino: s.ino, ctimeNs: s.ctimeNs });
const sameFile = (a: FileId, b: FileId | null): boolean =>
  b !== null && a.ino === b.ino && a.ctimeNs === b.ctimeNs;
const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** The file's identity (inode and change time), or null if there is none at `path`. */
async function fileId(path: string): Promise<FileId | null> {
  try {
    return identity(await stat(path, { bigint: true }));
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

/**
 * Looks at the lock a live or dead process holds, and removes it if that process is gone.
 * `again`: try to take the lock at once (it was removed, or is not the one looked at any
 * more); otherwise `holder` holds it and is alive (0: it has not written its PID yet).
 *
 * A dead PID alone does not make the lock stale: between reading it and removing the file,
 * that holder may have released the lock and exited, and another process taken it with a new
 * file, which a plain unlink would remove under it (two writers at once, one key lost: seen
 * with eight `keys create` at once). A holder removes its lock file and never rewrites it, so
 * the file itself (inode and change time) says whose it is: only the very file the dead PID was
 * read from is removed. It is moved aside first, which is atomic, so that of several waiters
 * only one takes it; one that moved a newer lock instead puts it back with a hard link, which
 * never replaces a lock taken meanwhile.
 */
export async function removeStaleLock(lock: string): Promise<{ again: boolean; holder: number }> {
  let id: FileId;
  let holder: number;
  try {
    const h = await open(lock, 'r');
    try {
      id = identity(await h.stat({ bigint: true }));
      holder = Number(await h.readFile('utf8'));
    } finally {
      await h.close();
    }
  } catch (err) {
    if (isMissing(err)) return { again: true, holder: 0 }; // released meanwhile
    throw err;
  }
  if (!(holder > 0) || isAlive(holder)) return { again: false, holder: holder || 0 };
  if (!sameFile(id, await fileId(lock))) return { again: true, holder }; // a newer lock
  const aside = `${lock}.stale-${process.pid}`;
  try {
    await rename(lock, aside);
  } catch (err) {
    if (isMissing(err)) return { again: true, holder }; // another waiter took it first
    throw err;
  }
  // The moved file still exists, so its inode number alone names it (a rename changes the
  // change time).
  if ((await fileId(aside))?.ino !== id.ino) await link(aside, lock).catch(() => {});
  await unlink(aside).catch(() => {});
  return { again: true, holder };
}

/** Adds a key; returns the key itself, which exists nowhere else afterwards. */
export async function createKey(
  path: string,
  name: string,
  role: string,
  scope: { subjects?: string[]; subjectPrefix?: string } = {},
): Promise<string> {
  if (!ROLES.includes(role as Role)) throw new Error(`--role must be one of ${ROLES.join(', ')}`);
  return withLock(path, () => addKey(path, name, role as Role, scope));
}

async function addKey(
  path: string,
  name: string,
  role: Role,
  scope: { subjects?: string[]; subjectPrefix?: string },
): Promise<string> {
  const file = await load(path);
  if (file.keys.some((k) => k.name === name))
    throw new Error(`a key named "${name}" exists already; revoke it first`);
  const key = generateKey();
  const next: KeyFile = {
    keys: [
      ...file.keys,
      {
        name,
        role,
        sha256: hashKey(key),
        created_at: new Date().toISOString(),
        ...(scope.subjects?.length ? { subjects: scope.subjects } : {}),
        ...(scope.subjectPrefix !== undefined ? { subject_prefix: scope.subjectPrefix } : {}),
      },
    ],
  };
  parseKeyFile(JSON.stringify(next), path); // the same checks the server applies
  await save(path, next);
  return key;
}

export function revokeKey(path: string, name: string): Promise<void> {
  return withLock(path, async () => {
    const file = await load(path);
    const keys = file.keys.filter((k) => k.name !== name);
    if (keys.length === file.keys.length) throw new Error(`no key named "${name}" in ${path}`);
    await save(path, { keys });
  });
}

export async function listKeys(path: string): Promise<KeyFile['keys']> {
  return (await load(path)).keys;
}
