/**
 * Prometheus text-format metrics, kept in memory. Small on purpose: counters with labels, gauges read
 * at scrape time, and a fixed-bucket histogram.
 */
type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

export class Counter {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    // Keyed by names and values as given (cheap); rendered with escaping once, at scrape time.
    let id = '';
    for (const k in labels) id += `${k}\u0000${labels[k]}\u0001`;
    const entry = this.values.get(id);
    if (entry) entry.value += by;
    else this.values.set(id, { labels, value: by });
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${labelText(labels)} ${value}`);
    return lines.join('\n');
  }
}

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) this.counts[i]!++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.count}`);
    return lines.join('\n');
  }
}

/** A gauge read at scrape time: one value, or one sample per label set. */
export class Gauge {
  constructor(readonly name: string, readonly help: string, private readonly read: () => Promise<number | Array<{ labels: Labels; value: number }>>) {}
  async render(): Promise<string> {
    const value = await this.read();
    const samples = typeof value === 'number' ? [{ labels: {}, value }] : value;
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`, ...samples.map((s) => `${this.name}${labelText(s.labels)} ${s.value}`)].join('\n');
  }
}

/** A counter kept elsewhere (the store's), read at scrape time. */
export class ScrapedCounter {
  constructor(readonly name: string, readonly help: string, private readonly read: () => number) {}
  async render(): Promise<string> {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`, `${this.name} ${this.read()}`].join('\n');
  }
}

/** Every metric statelock exports. Services count outcomes; the server counts requests. */
export class Metrics {
  readonly requests = new Counter('statelock_http_requests_total', 'HTTP requests answered, by door, method and status.');
  readonly requestSeconds = new Histogram(
    'statelock_http_request_duration_seconds',
    'Time to answer an HTTP request.',
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  );
  readonly lockAttempts = new Counter('statelock_lock_attempts_total', 'LOCK requests by result: acquired, reacquired (retry by the holder), refused, acquired_after_wait, refused_after_wait.');
  readonly unlocks = new Counter('statelock_unlocks_total', 'Unlocks by result: released (by the holder), forced (force-unlocks), session_ended (the wrapper reported its command exited), already_free, refused.');
  readonly writes = new Counter('statelock_state_writes_total', 'State writes by result: stored, forced, unchanged, refused, fenced (a released lock ID: kept as a rejected write).');
  readonly lockWaitSeconds = new Histogram('statelock_lock_wait_seconds', 'Time LOCK requests with ?wait= spent in line before the lock was granted.', [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300]);
  readonly autoReleases = new Counter('statelock_lock_auto_releases_total', 'Locks released by the server because their holder was dead for --release-dead-after.');
  private readonly gauges: Array<Gauge | ScrapedCounter> = [];

  addGauge(gauge: Gauge | ScrapedCounter): void {
    this.gauges.push(gauge);
  }

  async render(): Promise<string> {
    const parts = [this.requests, this.requestSeconds, this.lockAttempts, this.unlocks, this.writes, this.lockWaitSeconds, this.autoReleases].map((m) => m.render());
    for (const g of this.gauges) parts.push(await g.render());
    return parts.join('\n') + '\n';
  }
}
