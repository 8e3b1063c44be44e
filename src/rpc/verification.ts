import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { invalid } from '../domain/errors.js';
import { checkSubject } from './validate.js';
import {
  VerifyLedgerResponseSchema,
  VerifyLedgerStreamResponseSchema,
  VerifyProjectionResponseSchema,
  type QuotaAdminService,
  type VerifyLedgerResponse,
} from '../gen/quota/v1/quota_admin_service_pb.js';
import type { Db } from '../ledger/db.js';
import {
  PROGRESS_DEFAULTS,
  verifyLedger,
  verifyLedgerSteps,
  type LedgerVerification,
} from '../ledger/ledger-chain.js';
import { verifyProjection } from '../ledger/verify.js';
import {
  allowSubject,
  requireUnscoped,
  type CallContext,
  type ServiceHandlers,
} from './context.js';
import { chainBreakToProto, differenceToProto } from './convert.js';

const verificationToProto = (r: LedgerVerification): VerifyLedgerResponse =>
  create(VerifyLedgerResponseSchema, {
    subjectsChecked: BigInt(r.subjects),
    eventsChecked: BigInt(r.events),
    breaks: r.breaks.map(chainBreakToProto),
    truncated: r.truncated,
    checkpointId: r.checkpoint?.id ?? 0n,
    checkpointTime: r.checkpoint ? timestampFromDate(r.checkpoint.createdAt) : undefined,
  });

/** The subject a verification covers (null: all), checked against the key's scope. */
function verificationSubject(req: { subject: string }, ctx: CallContext): string | null {
  const subject = req.subject === '' ? null : checkSubject(req.subject, 'subject', true);
  if (subject === null) requireUnscoped(ctx, 'a verification without a subject');
  else allowSubject(ctx, subject);
  return subject;
}

/** VerifyProjection, VerifyLedger and VerifyLedgerStream: the ledger checked against itself. */
export function verificationHandlers(
  db: Db,
): Pick<
  ServiceHandlers<typeof QuotaAdminService>,
  'verifyProjection' | 'verifyLedger' | 'verifyLedgerStream'
> {
  return {
    async verifyProjection(req, ctx) {
      const subject = verificationSubject(req, ctx);
      const r = await verifyProjection(db, { subject, repair: req.repair });
      return create(VerifyProjectionResponseSchema, {
        subjectsChecked: BigInt(r.subjectsChecked),
        differences: r.differences.slice(0, 1000).map(differenceToProto),
        differencesFound: BigInt(r.differences.length),
        repaired: BigInt(r.repaired),
      });
    },

    async verifyLedger(req, ctx) {
      return verificationToProto(await verifyLedger(db, verificationSubject(req, ctx)));
    },

    // Checked before the first message, so a bad request fails the call rather than the stream.
    async verifyLedgerStream(req, ctx) {
      const subject = verificationSubject(req, ctx);
      const every = req.progressEverySubjects;
      if (every < 0 || every > 1_000_000) {
        throw invalid('progress_every_subjects', 'must be 1-1000000, or 0 for 1000');
      }
      const steps = verifyLedgerSteps(db, subject, {
        ...PROGRESS_DEFAULTS,
        everySubjects: every || PROGRESS_DEFAULTS.everySubjects,
      });
      return (async function* () {
        for (;;) {
          const step = await steps.next();
          if (step.done) {
            yield create(VerifyLedgerStreamResponseSchema, {
              item: { case: 'result', value: verificationToProto(step.value) },
            });
            return;
          }
          const p = step.value;
          yield create(VerifyLedgerStreamResponseSchema, {
            item: {
              case: 'progress',
              value: {
                subjectsChecked: BigInt(p.subjects),
                eventsChecked: BigInt(p.events),
                breaksFound: BigInt(p.breaks),
                subject: p.subject,
              },
            },
          });
        }
      })();
    },
  };
}
