// Ingestion rate and latency from /metrics (Prometheus text), /api/stats and
// /api/moments/stats, polled; live `rate` events from the feed fill in between polls.
import {api, optional} from "./api.js";
import {Series} from "./charts.js";

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Prometheus text format to {name: [{labels, value}]}. */
export function parsePrometheus(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] || "").matchAll(LABEL)) {
      labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = match[3] === "+Inf" ? Infinity : Number(match[3]);
    (out[match[1]] ||= []).push({labels, value});
  }
  return out;
}

export function total(metrics, name, filter = () => true) {
  return (metrics[name] || []).filter((m) => filter(m.labels)).reduce((a, m) => a + m.value, 0);
}

/** The q-quantile of a histogram's cumulative buckets, interpolated as Prometheus does. */
export function quantile(buckets, q) {
  const sorted = buckets
    .map((b) => ({le: b.labels.le === "+Inf" ? Infinity : Number(b.labels.le), count: b.value}))
    .sort((a, b) => a.le - b.le);
  const count = sorted.length ? sorted[sorted.length - 1].count : 0;
  if (!count) return null;
  const rank = q * count;
  let prevLe = 0;
  let prevCount = 0;
  for (const bucket of sorted) {
    if (bucket.count >= rank) {
      if (bucket.le === Infinity) return prevLe;
      const inBucket = bucket.count - prevCount;
      return inBucket ? prevLe + (bucket.le - prevLe) * ((rank - prevCount) / inBucket) : bucket.le;
    }
    prevLe = bucket.le;
    prevCount = bucket.count;
  }
  return prevLe;
}

/** Polls the engine's numbers; listeners get the latest snapshot after each poll. */
export class Ingestion {
  constructor(intervalMs = 5000) {
    this.intervalMs = intervalMs;
    this.rate = new Series(60); // events/s
    this.latency = new Series(60); // commit ms, p50 of the last interval
    this.snapshot = null;
    this.listeners = new Set();
    this.previous = null;
    this.timer = null;
    this.liveRate = null;
    this.lastPoll = 0;
    this.inflight = false;
    this.nudgeTimer = null;
  }

  /** Something happened (a live moment or decision): refresh soon, at most once a second. */
  nudge() {
    if (this.timer === null || this.nudgeTimer !== null) return;
    const wait = Math.max(0, 1000 - (Date.now() - this.lastPoll));
    this.nudgeTimer = setTimeout(() => {
      this.nudgeTimer = null;
      this.poll(false);
    }, wait);
  }

  start() {
    if (this.timer === null) {
      this.timer = setInterval(() => this.poll(true), this.intervalMs);
      this.poll(true);
    }
  }

  stop() {
    clearInterval(this.timer);
    clearTimeout(this.nudgeTimer);
    this.timer = null;
    this.nudgeTimer = null;
  }

  onChange(listener) {
    this.listeners.add(listener);
    if (this.snapshot) listener(this.snapshot);
  }

  /** A `rate` event from the live feed: the last second's ingest. */
  live(rate) {
    this.liveRate = {...rate, receivedAt: Date.now()};
    this.rate.push(rate.perSecond);
    this.latency.push(rate.commitMsMean);
    this.emit();
  }

  emit() {
    if (!this.snapshot) return;
    this.snapshot = {...this.snapshot, liveRate: this.liveRate};
    for (const listener of this.listeners) listener(this.snapshot);
  }

  /** Read the numbers; a `regular` poll (every intervalMs) also adds a point to the lines. */
  async poll(regular) {
    if (this.inflight) return;
    this.inflight = true;
    this.lastPoll = Date.now();
    try {
      await this.read(regular);
    } finally {
      this.inflight = false;
    }
  }

  async read(regular) {
    const [text, stats, momentStats] = await Promise.all([
      api("/metrics", {text: true}).catch(() => null),
      api("/api/stats").catch(() => null),
      optional("/api/moments/stats").catch(() => null),
    ]);
    const now = Date.now();
    const metrics = text ? parsePrometheus(text) : {};
    const accepted = total(metrics, "momently_events_accepted_total");
    // Every event the writer committed, whichever way it came (the HTTP API, an import, the
    // demo's simulator): the rate is measured on this.
    const committed = total(metrics, "momently_commit_events_sum");
    const buckets = metrics.momently_commit_seconds_bucket || [];
    const commitSum = total(metrics, "momently_commit_seconds_sum");
    const commitCount = total(metrics, "momently_commit_seconds_count");
    let perSecond = null;
    let intervalP50 = null;
    if (regular && this.previous && text) {
      const seconds = (now - this.previous.at) / 1000;
      perSecond = Math.max(0, committed - this.previous.committed) / seconds;
      const delta = buckets.map((b) => ({
        labels: b.labels,
        value: b.value - (this.previous.buckets.get(b.labels.le) ?? 0),
      }));
      const p50 = quantile(delta, 0.5);
      intervalP50 = p50 === null ? null : p50 * 1000;
      // Live rate events already draw the line while they come; polls fill the gaps.
      const fresh = this.liveRate && now - this.liveRate.receivedAt < this.intervalMs;
      if (!fresh) {
        this.rate.push(perSecond);
        this.latency.push(intervalP50);
      }
    }
    if (regular || !this.previous) this.previous = {at: now, committed, buckets: new Map(buckets.map((b) => [b.labels.le, b.value]))};
    const sizeSum = total(metrics, "momently_commit_events_sum");
    this.snapshot = {
      at: now,
      available: Boolean(text),
      perSecond: perSecond ?? this.snapshot?.perSecond ?? null,
      accepted,
      committed,
      duplicates: total(metrics, "momently_events_duplicate_total"),
      rejected: metrics.momently_events_rejected_total || [],
      requests: metrics.momently_ingest_requests_total || [],
      pending: total(metrics, "momently_writer_pending_events"),
      commitMean: commitCount ? (commitSum / commitCount) * 1000 : null,
      commitP50: quantile(buckets, 0.5) === null ? null : quantile(buckets, 0.5) * 1000,
      commitP99: quantile(buckets, 0.99) === null ? null : quantile(buckets, 0.99) * 1000,
      intervalP50: intervalP50 ?? this.snapshot?.intervalP50 ?? null,
      eventsPerCommit: commitCount ? sizeSum / commitCount : null,
      momentsByKind: metrics.momently_moments_detected_total || [],
      stagePosition: total(metrics, "momently_moment_stage_position"),
      stats,
      momentStats,
      liveRate: this.liveRate,
    };
    for (const listener of this.listeners) listener(this.snapshot);
  }
}
