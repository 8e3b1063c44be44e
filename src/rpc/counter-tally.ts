import type { Counter } from 'prom-client';

type Node = Map<string, Node | number>;

/**
 * Increments of a labelled counter, kept in nested maps by label value and added to the
 * prom-client counter when it is scraped (its collect hook): an increment builds no label key
 * string and checks no label names, which prom-client does on every `inc`. For counters
 * bumped on every call (see CallTally for the RPC metrics).
 */
export class CounterTally<L extends string> {
  private readonly root: Node = new Map();

  /** `labelNames`: the counter's labels, in the order `inc` takes their values. */
  constructor(private readonly labelNames: readonly L[]) {}

  /** One more, for these label values (one per label name, in order). */
  inc(...values: string[]): void {
    let node = this.root;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      let next = node.get(values[i]!) as Node | undefined;
      if (!next) node.set(values[i]!, (next = new Map()));
      node = next;
    }
    node.set(values[last]!, ((node.get(values[last]!) as number | undefined) ?? 0) + 1);
  }

  /** Adds what was counted since the last report to `counter`. */
  report(counter: Counter<L>): void {
    const walk = (node: Node, values: string[]) => {
      for (const [value, child] of node) {
        if (typeof child !== 'number') {
          walk(child, [...values, value]);
          continue;
        }
        if (child === 0) continue;
        const labels = Object.fromEntries(
          [...values, value].map((v, i) => [this.labelNames[i]!, v]),
        ) as Partial<Record<L, string>>;
        counter.inc(labels, child);
        node.set(value, 0);
      }
    };
    walk(this.root, []);
  }
}
