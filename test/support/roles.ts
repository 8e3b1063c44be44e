import type { Role } from '../../src/auth/api-keys.js';
import { QuotaAdminService } from '../../src/gen/quota/v1/quota_admin_service_pb.js';
import { QuotaService } from '../../src/gen/quota/v1/quota_service_pb.js';

/**
 * THE role decision for every RPC, written down independently of src/auth/api-keys.ts.
 * test/e2e/role-matrix.test.ts calls every method of every service with every role on both
 * transports and holds the server to this table; test/unit/api-keys.test.ts holds rolesFor to
 * it. A method in the descriptors that is missing here fails both: adding an RPC means
 * deciding here who may call it (e.g. 'quota.v1.QuotaAdminService/GetResetStatus').
 */
export const EXPECTED_ROLES: Readonly<Record<string, readonly Role[]>> = {
  'quota.v1.QuotaService/Consume': ['consumer', 'admin'],
  'quota.v1.QuotaService/ConsumeBatch': ['consumer', 'admin'],
  'quota.v1.QuotaService/Refund': ['consumer', 'admin'],
  'quota.v1.QuotaService/GetQuota': ['consumer', 'reader', 'admin'],
  // Holds and settles quota: what a consumer does, in two steps.
  'quota.v1.QuotaService/Reserve': ['consumer', 'admin'],
  'quota.v1.QuotaService/CommitReservation': ['consumer', 'admin'],
  'quota.v1.QuotaService/CancelReservation': ['consumer', 'admin'],
  'quota.v1.QuotaAdminService/SetQuota': ['admin'],
  'quota.v1.QuotaAdminService/DeleteQuota': ['admin'],
  'quota.v1.QuotaAdminService/ResetQuota': ['admin'],
  'quota.v1.QuotaAdminService/ListQuotas': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/ListEvents': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/StreamEvents': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/ListResetRuns': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/TriggerResetSweep': ['admin'],
  'quota.v1.QuotaAdminService/GetResetStatus': ['reader', 'admin'],
  // Read-only: replays the ledger against proposed limits.
  'quota.v1.QuotaAdminService/BacktestQuota': ['reader', 'admin'],
  'quota.v1.QuotaAdminService/BacktestQuotaStream': ['reader', 'admin'],
  // Repair rewrites counters: admin only.
  'quota.v1.QuotaAdminService/VerifyProjection': ['admin'],
  // Reads only, but the whole ledger: admin (the default).
  'quota.v1.QuotaAdminService/VerifyLedger': ['admin'],
  // The same verification with progress messages: the same role.
  'quota.v1.QuotaAdminService/VerifyLedgerStream': ['admin'],
  // Says only who the caller is (the console asks it to know what to show).
  'quota.v1.QuotaAdminService/WhoAmI': ['consumer', 'reader', 'admin'],
};

/** The services the server mounts; every one of their methods needs a decision above. */
export const SERVICES = [QuotaService, QuotaAdminService] as const;

export const allMethodNames = (): string[] =>
  SERVICES.flatMap((s) => s.methods.map((m) => `${s.typeName}/${m.name}`));
