import { fromBinary, type DescMessage } from '@bufbuild/protobuf';
import { configureTextEncoding, getTextEncoding } from '@bufbuild/protobuf/wire';
import { QuotaError } from '../domain/errors.js';

/**
 * Invalid UTF-8 in a string field must be refused with an error naming that field, on every
 * transport. The protobuf decoder can only throw without saying which field it was (and
 * connect-node then answers "internal"), so instead the decoder lets the text through with a
 * lone surrogate in front: the field validators reject any string that is not well formed,
 * and they know the field's name. (configureTextEncoding is the library's own hook for this;
 * it is marked deprecated only as a way to polyfill TextDecoder, which is not our use.)
 */
const NOT_UTF8 = '\uD800';
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossyDecoder = new TextDecoder('utf-8', { ignoreBOM: true });
configureTextEncoding({
  ...getTextEncoding(),
  decodeUtf8(bytes: Uint8Array): string {
    // Short ASCII (subjects, metrics, keys): valid UTF-8 whatever the mode, and read by hand
    // for less than a TextDecoder call costs.
    if (bytes.length <= 64) {
      let ascii = true;
      for (let i = 0; i < bytes.length; i++) {
        if (bytes[i]! > 0x7f) {
          ascii = false;
          break;
        }
      }
      if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
    }
    try {
      return strictDecoder.decode(bytes);
    } catch {
      return NOT_UTF8 + lossyDecoder.decode(bytes);
    }
  },
});

/** Decodes a request, turning any failure into INVALID_ARGUMENT that says what is wrong. */
export function decodeRequest<T>(schema: DescMessage, bytes: Uint8Array): T {
  try {
    return fromBinary(schema, bytes) as T;
  } catch (err) {
    throw new QuotaError(
      'INVALID_ARGUMENT',
      `request: not a valid ${schema.typeName}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}
