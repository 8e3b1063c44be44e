import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { QuotaError } from '../domain/errors.js';
import type { HeaderReader } from './header-reader.js';
import type { SubjectScope } from './scope.js';

export type Role = 'consumer' | 'reader' | 'admin';
export const ROLES: readonly Role[] = ['consumer', 'reader', 'admin'];

/** One entry of the keys file. The key itself is never stored, only its SHA-256. */
export interface KeyEntry {
  name: string;
  role: Role;
  sha256: string;
  created_at?: string;
  /** Optional scope: the key may act only on these subjects ... */
  subjects?: string[];
  /** ... and/or on those starting with this prefix. Neither: every subject. */
  subject_prefix?: string;
}

/** Who is calling, as the handlers see it. Role null: authentication is off. */
export interface Caller {
  actor: string;
  role: Role | null;
  scope: SubjectScope | null;
}

export interface KeyFile {
  keys: KeyEntry[];
}

/** Which roles may call each method; anything not listed needs admin. */
const ACCESS: Record<string, readonly Role[]> = {
  'quota.v1.QuotaService/Consume': ['consumer', 'admin'],
  'quota.v1.QuotaService/ConsumeBatch': ['consumer', 'admin'],
  'quota.v1.QuotaService/Refund': ['consumer', 'admin'],
  'quota.v1.QuotaService/GetQuota': ['consumer', 'reader', 'admin'],
  'quota.v1.QuotaService/Reserve': ['consumer', 'admin'],
  'quota.v1.QuotaService/CommitReservation': ['consumer', 'admin'],
  'quota.v1.QuotaService/CancelReservation': ['consumer', 'admin'],
  'quota.v1.QuotaAdminService/ListEvents': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/StreamEvents': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/ListQuotas': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/ListResetRuns': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/GetResetStatus': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/BacktestQuota': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/BacktestQuotaStream': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/WhoAmI': ['consumer', 'reader', 'admin'],
};

export const rolesFor = (method: string): readonly Role[] => ACCESS[method] ?? ['admin'];

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

/**
 * Keys are 32 random bytes: guessing one is hopeless, so a fast hash is enough to keep the
 * file useless to a reader while costing nothing per call.
 */
export const generateKey = (): string => `qlk_${randomBytes(32).toString('base64url')}`;
export const hashKey = (key: string): string =>
  createHash('sha256').update(key, 'utf8').digest('hex');

/** Parses and checks a keys file; throws one message listing every problem. */
export function parseKeyFile(text: string, source: string): KeyFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(
      `${source}: not valid JSON (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  const problems: string[] = [];
  const keys = (raw as { keys?: unknown })?.keys;
  if (!Array.isArray(keys)) throw new Error(`${source}: expected {"keys": [...]}`);
  const names = new Set<string>();
  keys.forEach((k: Partial<KeyEntry>, i) => {
    const where = `${source}: keys[${i}]`;
    if (typeof k?.name !== 'string' || !KEY_NAME.test(k.name))
      problems.push(`${where}.name must match ${KEY_NAME}`);
    else if (names.has(k.name)) problems.push(`${where}.name "${k.name}" appears twice`);
    else names.add(k.name);
    if (!ROLES.includes(k?.role as Role))
      problems.push(`${where}.role must be one of ${ROLES.join(', ')}`);
    if (
      k?.subjects !== undefined &&
      (!Array.isArray(k.subjects) ||
        k.subjects.length === 0 ||
        !k.subjects.every((x) => typeof x === 'string' && x.length > 0 && x !== '*'))
    )
      problems.push(`${where}.subjects must be a non-empty list of subjects (not "*")`);
    if (
      k?.subject_prefix !== undefined &&
      (typeof k.subject_prefix !== 'string' || k.subject_prefix.length === 0)
    )
      problems.push(`${where}.subject_prefix must be a non-empty string`);
    if (typeof k?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(k.sha256)) {
      problems.push(
        `${where}.sha256 must be 64 lowercase hex digits (the SHA-256 of the key, never the key)`,
      );
    }
  });
  if (problems.length) throw new Error(problems.join('\n'));
  return { keys: keys as KeyEntry[] };
}

export function readKeyFile(path: string): KeyFile {
  return parseKeyFile(readFileSync(path, 'utf8'), path);
}

// Both headers are trimmed: HTTP/1.1 strips surrounding whitespace before we see a header and
// HTTP/2 does not, and a key must be read the same way whichever transport carried it.
function presentedKey(header: HeaderReader): string | null {
  const auth = header('authorization')?.trim();
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    return m ? m[1]! : null;
  }
  return header('x-api-key')?.trim() || null;
}

const UNAUTHENTICATED = new QuotaError(
  'UNAUTHENTICATED',
  'a valid API key is required: send "authorization: Bearer <key>" or "x-api-key: <key>"',
);

/**
 * The keys in force and the check every call goes through. The presented key's hash is
 * compared with every stored hash in constant time, without stopping at a match, so timing
 * says nothing about which keys exist.
 */
export class KeyStore {
  private entries: { name: string; role: Role; hash: Buffer; scope: SubjectScope | null }[] = [];

  constructor(file: KeyFile) {
    this.replace(file);
  }

  replace(file: KeyFile): void {
    this.entries = file.keys.map((k) => ({
      name: k.name,
      role: k.role,
      hash: Buffer.from(k.sha256, 'hex'),
      scope:
        k.subjects || k.subject_prefix
          ? { subjects: k.subjects ?? [], prefix: k.subject_prefix ?? null }
          : null,
    }));
  }

  get size(): number {
    return this.entries.length;
  }

  /** Returns the caller (key name, role, scope) or throws UNAUTHENTICATED / PERMISSION_DENIED. */
  authenticate(header: HeaderReader, method: string): Caller {
    const key = presentedKey(header);
    if (!key || key.length > 256) throw UNAUTHENTICATED;
    const hash = createHash('sha256').update(key, 'utf8').digest();
    let found: (typeof this.entries)[number] | null = null;
    for (const e of this.entries) {
      if (timingSafeEqual(e.hash, hash) && !found) found = e;
    }
    if (!found) throw UNAUTHENTICATED;
    const allowed = rolesFor(method);
    if (!allowed.includes(found.role)) {
      throw new QuotaError(
        'PERMISSION_DENIED',
        `${method} needs role ${allowed.join(' or ')}; this key has role ${found.role}`,
      );
    }
    return { actor: found.name, role: found.role, scope: found.scope };
  }
}
