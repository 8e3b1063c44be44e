import { create, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConsumeRequestSchema,
  type ConsumeRequest,
} from '../../src/gen/quota/v1/quota_service_pb.js';
import { decodeRequest } from '../../src/rpc/decode.js';

const decode = (bytes: Uint8Array) => decodeRequest<ConsumeRequest>(ConsumeRequestSchema, bytes);

describe('request strings', () => {
  it('come back as sent, ASCII or not, short or long', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: 'binary' }),
          fc.string({ minLength: 60, maxLength: 80 }),
        ),
        (subject) => {
          const req = create(ConsumeRequestSchema, { subject, metric: 'm', amount: 1n });
          expect(decode(toBinary(ConsumeRequestSchema, req)).subject).toBe(subject);
        },
      ),
    );
  });

  it('that are not UTF-8 arrive marked with a lone surrogate, for the validators to refuse', () => {
    // Field 1 (subject), length 3: "a", then 0xff (never valid in UTF-8), then "b".
    const bytes = Uint8Array.from([0x0a, 3, 0x61, 0xff, 0x62]);
    const subject = decode(bytes).subject;
    expect(subject.startsWith('\uD800')).toBe(true);
    expect(subject.isWellFormed()).toBe(false);
  });
});
