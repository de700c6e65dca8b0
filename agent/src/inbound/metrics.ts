/**
 * A small typed metrics registry rendered in the Prometheus text format (version 0.0.4). No
 * dependency: counters are plain numbers bumped on the hot path; gauges are read when scraped.
 * The inbound listener registers its metrics here, and the tunnel listener can add its own.
 */
import { DetourError } from '@detour/router/errors';

export type Labels<L extends string> = Readonly<Record<L, string>>;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(names: readonly string[], values: readonly string[]): string {
  if (names.length === 0) return '';
  return `{${names.map((name, i) => `${name}="${escapeLabel(values[i] ?? '')}"`).join(',')}}`;
}

/** One labelled series of a counter; keep it and call `inc` on the hot path (no lookup). */
export class CounterChild {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
}

interface Metric {
  readonly name: string;
  render(): string;
}

export class Counter<L extends string = never> implements Metric {
  readonly name: string;
  private readonly help: string;
  private readonly labelNames: readonly L[];
  private readonly series = new Map<string, { values: string[]; child: CounterChild }>();

  constructor(name: string, help: string, labelNames: readonly L[]) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  /** The series for these label values, created on first use. */
  labels(labels: Labels<L>): CounterChild {
    const values = this.labelNames.map((name) => labels[name]);
    const key = values.join('\u0000');
    let entry = this.series.get(key);
    if (!entry) {
      entry = { values, child: new CounterChild() };
      this.series.set(key, entry);
    }
    return entry.child;
  }

  inc(labels: Labels<L>, by = 1): void {
    this.labels(labels).inc(by);
  }

  get(labels: Labels<L>): number {
    return this.labels(labels).value;
  }

  render(): string {
    let text = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n`;
    for (const { values, child } of this.series.values())
      text += `${this.name}${labelText(this.labelNames, values)} ${child.value}\n`;
    return text;
  }
}

export type CollectedType = 'gauge' | 'counter';

/**
 * Values read when scraped: `collect` returns one number per label set. A gauge, or a counter
 * whose total lives elsewhere (bytes a socket or a tunnel already counts).
 */
export class Collected<L extends string = never> implements Metric {
  readonly name: string;
  private readonly help: string;
  private readonly type: CollectedType;
  private readonly labelNames: readonly L[];
  private readonly collect: () => Iterable<[Labels<L>, number]>;

  constructor(
    name: string,
    help: string,
    type: CollectedType,
    labelNames: readonly L[],
    collect: () => Iterable<[Labels<L>, number]>,
  ) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.labelNames = labelNames;
    this.collect = collect;
  }

  render(): string {
    let text = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`;
    for (const [labels, value] of this.collect()) {
      text += `${this.name}${labelText(
        this.labelNames,
        this.labelNames.map((name) => labels[name]),
      )} ${value}\n`;
    }
    return text;
  }
}

export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();

  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return this.add(new Counter<L>(name, help, labelNames));
  }

  /** A gauge (or externally kept counter) whose values `collect` computes at scrape time. */
  collected<L extends string = never>(
    name: string,
    help: string,
    type: CollectedType,
    labelNames: readonly L[],
    collect: () => Iterable<[Labels<L>, number]>,
  ): Collected<L> {
    return this.add(new Collected<L>(name, help, type, labelNames, collect));
  }

  /** A gauge without labels, read at scrape time. */
  value(name: string, help: string, read: () => number): Collected {
    return this.collected(name, help, 'gauge', [], () => [[{} as Labels<never>, read()]]);
  }

  /** The exposition text for `GET /metrics` (content type `text/plain; version=0.0.4`). */
  render(): string {
    let text = '';
    for (const metric of this.metrics.values()) text += metric.render();
    return text;
  }

  private add<M extends Metric>(metric: M): M {
    if (this.metrics.has(metric.name)) {
      throw new DetourError(
        'DETOUR_METRIC_DUPLICATE',
        `metric ${metric.name} is registered twice: register each metric once per registry`,
      );
    }
    this.metrics.set(metric.name, metric);
    return metric;
  }
}

export const prometheusContentType = 'text/plain; version=0.0.4; charset=utf-8';
