// Fatigue and opt-outs (from decisions' bound constraints and reasons) and ingestion
// (rate and commit latency from /metrics, live rate events in between).
import {api, optional, query} from "./api.js";
import {h, fmt, table, empty, failed, unavailable, customerLink, chip} from "./dom.js";
import {bars, sparkline} from "./charts.js";

function checkOf(line) {
  const at = line.indexOf(":");
  return at > 0 ? line.slice(0, at) : line;
}

function tally(items, keyOf) {
  const counts = new Map();
  for (const item of items) {
    for (const key of [].concat(keyOf(item) ?? [])) counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]);
}

function fatigueCard(decisions) {
  const n = decisions.length;
  const silent = decisions.filter((d) => d.action === "silent");
  const held = decisions.filter((d) => d.status === "held_out").length;
  const cancelled = decisions.filter((d) => d.status === "cancelled");
  const bound = tally(decisions, (d) => [...new Set((d.bound || []).map(checkOf))]);
  const optedOut = new Map();
  for (const d of decisions) {
    if ((d.bound || []).some((line) => checkOf(line) === "opt_out")) {
      optedOut.set(d.customerId, Math.max(optedOut.get(d.customerId) ?? 0, d.atMs));
    }
  }
  const fatigue = decisions.map((d) => d.features?.fatigue).filter(Number.isFinite);
  const buckets = [0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0001].slice(0, -1).map((lo, i, all) => {
    const hi = i + 1 < all.length ? all[i + 1] : 1.0001;
    return [`${lo.toFixed(1)}–${Math.min(hi, 1).toFixed(1)}`,
      fatigue.filter((f) => f >= lo && f < hi).length];
  });
  const mean = fatigue.length ? fatigue.reduce((a, b) => a + b, 0) / fatigue.length : null;
  return [
    h("section", {class: "card", id: "fatigue"}, h("h3", null, "Fatigue"),
      h("p", {class: "muted"}, `The last ${fmt.num(n)} decisions: ${fmt.num(silent.length)} ` +
        `silent (${fmt.pct(n ? silent.length / n : null)}), ${fmt.num(held)} held out, ` +
        `${fmt.num(cancelled.length)} cancelled. Mean predicted fatigue ${fmt.score(mean)}.`),
      h("h4", null, "Constraints that bound (decisions)"),
      bound.length ? bars(bound) : empty("No constraint bound."),
      h("h4", null, "Predicted fatigue when deciding"),
      fatigue.length ? bars(buckets) : empty("No decision carries a fatigue score."),
      h("h4", null, "Why silent"),
      silent.length ? bars(tally(silent, (d) => (d.reasons || [])[0] ?? "silent")) :
        empty("Never silent.")),
    h("section", {class: "card", id: "optouts"}, h("h3", null, "Opt-outs"),
      h("p", {class: "muted"}, `${fmt.num(optedOut.size)} customers had an offer ruled out by ` +
        "their opt-out in these decisions."),
      optedOut.size ? table(["customer", "last decision"], [...optedOut.entries()]
        .sort((a, b) => b[1] - a[1]).slice(0, 20)
        .map(([id, at]) => h("tr", null, h("td", null, customerLink(id)),
          h("td", null, fmt.time(at))))) : empty("No opt-out has bound."),
      h("h4", null, "Cancelled sends"),
      cancelled.length ? bars(tally(cancelled, (d) => (d.reasons || [])
        .filter((r) => r.startsWith("cancelled:")).map((r) => r.slice(11)))) :
        empty("None cancelled.")),
  ];
}

function deliveriesCard(stats) {
  if (stats === null) return h("section", {class: "card"}, h("h3", null, "Delivery"),
    unavailable("Delivery stats"));
  const outbox = Object.entries(stats.outbox || {});
  const counts = Object.entries(stats.counts || {}).sort((a, b) => b[1] - a[1]);
  return h("section", {class: "card", id: "delivery"}, h("h3", null, "Delivery"),
    h("h4", null, "Outbox by state"),
    outbox.length ? bars(outbox) : empty("The outbox is empty."),
    h("h4", null, "On the way out"),
    counts.length ? bars(counts) : empty("Nothing yet."));
}

export async function showFatigue(container) {
  container.replaceChildren(h("p", {class: "loading"}, "Loading decisions…"));
  try {
    const [page, stats] = await Promise.all([
      api("/api/decisions" + query({limit: 1000})),
      optional("/api/deliveries/stats").catch(() => null),
    ]);
    container.replaceChildren(h("div", {class: "grid-3"}, ...fatigueCard(page.decisions),
      deliveriesCard(stats)));
  } catch (error) {
    container.replaceChildren(failed("Fatigue and opt-outs", error));
  }
}

export function tiles(snapshot, series) {
  const stats = snapshot.stats || {};
  const ms = snapshot.momentStats || {};
  const perSecond = snapshot.liveRate && Date.now() - snapshot.liveRate.receivedAt < 5000
    ? snapshot.liveRate.perSecond : snapshot.perSecond;
  const tile = (id, label, value, extra) => h("div", {class: "tile", id},
    h("span", {class: "tile-label"}, label), h("span", {class: "tile-value"}, value), extra);
  return [
    tile("tile-rate", "events / s", fmt.num(perSecond, perSecond !== null && perSecond < 10 ? 1 : 0),
      sparkline(series.rate.values, {label: "events per second"})),
    tile("tile-latency", "commit p50 / p99",
      `${fmt.num(snapshot.commitP50, 1)} / ${fmt.num(snapshot.commitP99, 1)} ms`,
      sparkline(series.latency.values, {label: "commit latency, ms"})),
    tile("tile-events", "events", fmt.num(stats.events ?? snapshot.accepted)),
    tile("tile-customers", "customers", fmt.num(stats.customers)),
    tile("tile-moments", "moments", fmt.num(ms.moments)),
    tile("tile-decisions", "decisions",
      fmt.num((ms["decisions.send"] ?? 0) + (ms["decisions.schedule"] ?? 0) +
        (ms["decisions.silent"] ?? 0)),
      h("span", {class: "tile-extra"}, `${fmt.num(ms["decisions.send"])} sent · ` +
        `${fmt.num(ms["decisions.schedule"])} planned · ${fmt.num(ms["decisions.silent"])} silent`)),
    tile("tile-pending", "writer queue", fmt.num(snapshot.pending)),
  ];
}

export function showIngestion(container, snapshot, series) {
  if (!snapshot) {
    container.replaceChildren(h("p", {class: "loading"}, "Reading /metrics…"));
    return;
  }
  if (!snapshot.available) {
    container.replaceChildren(unavailable("Metrics (/metrics)"));
    return;
  }
  const rejected = snapshot.rejected.filter((m) => m.value > 0)
    .map((m) => [m.labels.reason ?? "?", m.value]);
  const requests = snapshot.requests.filter((m) => m.value > 0)
    .sort((a, b) => b.value - a.value);
  const kinds = snapshot.momentsByKind.map((m) => [m.labels.kind, m.value]);
  const stats = snapshot.stats || {};
  const ms = snapshot.momentStats || {};
  container.replaceChildren(h("div", {class: "grid-2"},
    h("section", {class: "card", id: "ingest-rate"}, h("h3", null, "Ingestion rate"),
      h("div", {class: "big"}, fmt.num(series.rate.last, 1), h("small", null, " events/s")),
      sparkline(series.rate.values, {width: 480, height: 80, label: "events per second"}),
      h("p", {class: "muted"}, `${fmt.num(snapshot.committed)} events committed since the ` +
        `server started, ${fmt.num(snapshot.accepted)} of them through the tracking API; ` +
        `${fmt.num(snapshot.duplicates)} duplicates dropped; ` +
        `${fmt.num(snapshot.eventsPerCommit, 1)} events per group commit.`)),
    h("section", {class: "card", id: "ingest-latency"}, h("h3", null, "Commit latency"),
      h("div", {class: "big"}, fmt.num(series.latency.last, 2), h("small", null, " ms p50 (recent)")),
      sparkline(series.latency.values, {width: 480, height: 80, label: "commit ms"}),
      h("p", {class: "muted"}, `Since start: mean ${fmt.num(snapshot.commitMean, 2)} ms, ` +
        `p50 ${fmt.num(snapshot.commitP50, 2)} ms, p99 ${fmt.num(snapshot.commitP99, 2)} ms ` +
        "(an acknowledged event waits for its group's commit). Writer queue: " +
        `${fmt.num(snapshot.pending)} events.`)),
    h("section", {class: "card"}, h("h3", null, "Rejected input"),
      rejected.length ? bars(rejected) : empty("Nothing rejected.")),
    h("section", {class: "card"}, h("h3", null, "Requests"),
      requests.length ? table(["endpoint", "status", "requests"], requests.map((m) =>
        h("tr", null, h("td", null, m.labels.endpoint), h("td", null,
          chip(m.labels.status, m.labels.status === "200" ? "send" : "silent")),
        h("td", {class: "n"}, fmt.num(m.value))))) : empty("No request yet.")),
    h("section", {class: "card"}, h("h3", null, "Moments detected since start, by kind"),
      kinds.length ? bars(kinds) : empty("None yet.")),
    h("section", {class: "card"}, h("h3", null, "Stores"),
      table(["", ""], [
        ["events in the log", stats.events], ["customers", stats.customers],
        ["identities", stats.identities], ["moments", ms.moments],
        ["customers with state", ms.customerStates], ["journey runs", ms.journeyRuns],
        ["moment stage checkpoint (log seq)", ms.checkpoint],
        ["moments held back by cooldowns", ms.cooledDown], ["events the detector failed on", ms.failed],
      ].map(([k, v]) => h("tr", null, h("td", null, k), h("td", {class: "n"}, fmt.num(v))))))));
}
