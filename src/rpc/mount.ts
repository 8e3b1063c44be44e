import type {
  DescMethod,
  DescMethodServerStreaming,
  DescMethodUnary,
  DescService,
  Message,
} from '@bufbuild/protobuf';
import type { Handler, ServiceHandlers } from './context.js';

/** A method and its handler, with the message types erased (see mountService). */
export type MountedMethod =
  | { method: DescMethodUnary; streaming: false; handler: Handler<Message, Message> }
  | {
      method: DescMethodServerStreaming;
      streaming: true;
      handler: Handler<Message, AsyncIterable<Message>>;
    };

/** A service ready for both transports: its descriptor and the handler of each method. */
export interface MountedService {
  desc: DescService;
  methods: MountedMethod[];
}

const isUnary = (m: DescMethod): m is DescMethodUnary => m.methodKind === 'unary';
const isServerStreaming = (m: DescMethod): m is DescMethodServerStreaming =>
  m.methodKind === 'server_streaming';

/**
 * Pairs a generated service descriptor with its handlers. `handlers` is checked against the
 * descriptor by its type: every method, each with its own request and response messages.
 */
export function mountService<S extends DescService>(
  desc: S,
  handlers: ServiceHandlers<S>,
): MountedService {
  // The one unchecked step of the transports. Looked up by a method's name at run time, a
  // handler's message types cannot follow, so they are erased here (the intersection stands
  // for "whichever the method's kind says"). It holds because the transports decode each
  // request with the input schema of the very method the handler was typed for, and encode
  // its answer with that method's output schema.
  const byName = handlers as unknown as Partial<
    Record<string, Handler<Message, Message> & Handler<Message, AsyncIterable<Message>>>
  >;
  const methods: MountedMethod[] = [];
  for (const method of desc.methods) {
    const handler = byName[method.localName];
    if (!handler) continue;
    if (isServerStreaming(method)) methods.push({ method, streaming: true, handler });
    else if (isUnary(method)) methods.push({ method, streaming: false, handler });
    // Client and bidi streaming are served by neither transport (their handler type is never).
  }
  return { desc, methods };
}
