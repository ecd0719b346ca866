// The live feed of moments and decisions, newest first.
import {h, chip, customerLink, fmt} from "./dom.js";

const MAX_ROWS = 300;

function momentSummary(moment) {
  const d = moment.details || {};
  const parts = [];
  if (d.text) parts.push(`“${d.text}”`);
  if (d.category) parts.push(d.category);
  if (d.place) parts.push(`at ${d.place}`);
  if (typeof d.score === "number") parts.push(`sentiment ${d.score.toFixed(2)}`);
  if (d.worldEvent) parts.push(`world event ${d.worldEvent}`);
  return parts.join(" · ");
}

function decisionSummary(decision) {
  if (decision.action === "silent") return (decision.reasons || [])[0] || "silent";
  const when = decision.action === "schedule" ? ` at ${fmt.time(decision.sendAtMs)}` : "";
  return `${decision.offer ?? "?"} → ${decision.channel ?? "?"}${when}`;
}

export class Feed {
  constructor(list, {onOpenDecision}) {
    this.list = list;
    this.onOpenDecision = onOpenDecision;
    this.items = new Map(); // id -> {kind, item, row}
    this.pending = [];
    this.pendingIds = new Set();
    this.paused = false;
    this.filters = {moment: true, decision: true, silent: true};
    this.flushTimer = null;
    this.counts = {moments: 0, decisions: 0, dropped: 0};
    this.listeners = new Set();
  }

  onChange(listener) {
    this.listeners.add(listener);
  }

  /** A moment or decision, from the stream or the API; each id is shown once. */
  add(kind, item) {
    const id = kind === "moment" ? item.momentId : item.decisionId;
    if (!id || this.items.has(id) || this.pendingIds.has(id)) return;
    this.pending.push({id, kind, item});
    this.pendingIds.add(id);
    if (this.pending.length > 2 * MAX_ROWS) {
      // Paused, or a burst: only the newest can be shown anyway.
      this.pending.sort((a, b) => (a.item.atMs ?? 0) - (b.item.atMs ?? 0));
      for (const old of this.pending.splice(0, this.pending.length - MAX_ROWS)) {
        this.pendingIds.delete(old.id);
      }
    }
    if (kind === "moment") this.counts.moments += 1;
    else this.counts.decisions += 1;
    this.schedule();
  }

  cancelled({decisionId, reason}) {
    const entry = this.items.get(decisionId);
    if (!entry) return;
    entry.item = {...entry.item, status: "cancelled", reasons: [...(entry.item.reasons || []),
      `cancelled: ${reason}`]};
    const row = this.row(entry.kind, entry.item);
    entry.row.replaceWith(row);
    entry.row = row;
  }

  dropped({dropped}) {
    this.counts.dropped += dropped;
    for (const listener of this.listeners) listener(this);
  }

  schedule() {
    if (this.flushTimer === null && !this.paused) {
      this.flushTimer = setTimeout(() => this.flush(), 50);
    }
  }

  setPaused(paused) {
    this.paused = paused;
    if (!paused) this.schedule();
  }

  setFilter(name, on) {
    this.filters[name] = on;
    for (const entry of this.items.values()) entry.row.hidden = !this.visible(entry);
  }

  visible({kind, item}) {
    if (kind === "moment") return this.filters.moment;
    if (!this.filters.decision) return false;
    return this.filters.silent || item.action !== "silent";
  }

  flush() {
    this.flushTimer = null;
    if (this.paused || !this.pending.length) return;
    const batch = this.pending.sort((a, b) => (a.item.atMs ?? 0) - (b.item.atMs ?? 0));
    this.pending = [];
    this.pendingIds.clear();
    for (const entry of batch) {
      entry.row = this.row(entry.kind, entry.item);
      entry.row.hidden = !this.visible(entry);
      this.items.set(entry.id, entry);
      this.insert(entry);
    }
    while (this.items.size > MAX_ROWS && this.list.lastElementChild) {
      const oldest = this.list.lastElementChild; // the list is kept newest first
      this.items.delete(oldest.dataset.id);
      oldest.remove();
    }
    this.list.classList.toggle("is-empty", this.items.size === 0);
    for (const listener of this.listeners) listener(this);
  }

  /** Newest first by event time; rows that arrive late go to their place. */
  insert(entry) {
    const at = entry.item.atMs ?? 0;
    let before = this.list.firstElementChild;
    while (before && Number(before.dataset.at) > at) before = before.nextElementSibling;
    this.list.insertBefore(entry.row, before);
  }

  row(kind, item) {
    if (kind === "moment") {
      return h("li", {class: ["feed-row", "moment", `kind-${item.kind}`],
        dataset: {id: item.momentId, at: item.atMs ?? 0}},
        h("time", {datetime: fmt.iso(item.atMs), title: fmt.time(item.atMs)}, fmt.clock(item.atMs)),
        chip(item.kind, item.kind),
        h("span", {class: "what"}, item.name),
        customerLink(item.customerId),
        h("span", {class: "confidence", title: "confidence"}, fmt.pct(item.confidence, 0)),
        h("span", {class: "summary", title: momentSummary(item)}, momentSummary(item)));
    }
    const open = () => this.onOpenDecision(item.decisionId);
    const row = h("li", {
      class: ["feed-row", "decision", `action-${item.action}`, `status-${item.status}`],
      dataset: {id: item.decisionId, at: item.atMs ?? 0}, tabindex: 0, role: "button",
      title: "open the explanation",
      on: {
        click: (event) => {
          if (!event.target.closest("a")) open();
        },
        keydown: (event) => {
          if (event.key === "Enter") open();
        },
      },
    },
    h("time", {datetime: fmt.iso(item.atMs), title: fmt.time(item.atMs)}, fmt.clock(item.atMs)),
    chip(item.action, item.action),
    h("span", {class: "what", title: decisionSummary(item)}, decisionSummary(item)),
    customerLink(item.customerId),
    h("span", {class: "flags"},
      item.holdout ? chip("held out", "held") : null,
      item.status === "cancelled" ? chip("cancelled", "cancelled") : null),
    h("span", {class: "summary"}, `for ${item.momentName} (${item.momentKind})`));
    return row;
  }

  /** Customers seen most recently, newest first. */
  recentCustomers(limit = 60) {
    const latest = new Map();
    for (const {item} of this.items.values()) {
      const at = item.atMs ?? 0;
      if ((latest.get(item.customerId) ?? -Infinity) < at) latest.set(item.customerId, at);
    }
    return [...latest.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([id]) => id);
  }

  /** Recent place moments per place id (enter, dwell, …). */
  placeActivity() {
    const counts = new Map();
    for (const {kind, item} of this.items.values()) {
      const place = kind === "moment" && item.details && item.details.place;
      if (place) counts.set(place, (counts.get(place) ?? 0) + 1);
    }
    return counts;
  }

  decisions() {
    return [...this.items.values()].filter((e) => e.kind === "decision").map((e) => e.item);
  }

  selected(id) {
    for (const entry of this.items.values()) {
      entry.row.classList.toggle("selected", entry.id === id);
    }
  }
}
