// One decision's explanation, from GET /api/decisions/{id}: the candidates with their
// scores and parts, the constraints that bound, why now, why this channel, or why silent.
import {api, optional, enc, query} from "./api.js";
import {h, chip, customerLink, dl, fmt, table, empty, failed, unavailable} from "./dom.js";

const WHEN = /^(now:|in [\d.]+ h:)/;
const CHANNEL = /^channel /;
const PART_ORDER = ["relevance", "propensity", "value", "receptivity", "left", "affinity",
  "context", "fatigue_cost"];

function partsOf(parts) {
  const keys = Object.keys(parts || {}).sort((a, b) => {
    const ia = PART_ORDER.indexOf(a);
    const ib = PART_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
  if (!keys.length) return h("span", {class: "muted"}, "—");
  return h("span", {class: "parts"}, keys.map((key) =>
    h("span", {class: "part", title: key}, h("b", null, key), " ", fmt.score(parts[key]))));
}

function reasonBlock(title, lines, kind) {
  if (!lines.length) return null;
  return h("section", {class: ["why", kind && `why-${kind}`]},
    h("h4", null, title),
    h("ul", null, lines.map((line) => h("li", null, line))));
}

function explain(decision) {
  const reasons = decision.reasons || [];
  if (decision.action === "silent") {
    return [reasonBlock("Why silent", reasons, "silent")];
  }
  const now = reasons.filter((r) => WHEN.test(r));
  const channel = reasons.filter((r) => CHANNEL.test(r));
  const offer = reasons.filter((r) => !WHEN.test(r) && !CHANNEL.test(r));
  return [
    reasonBlock("Why this offer", offer, "offer"),
    reasonBlock(decision.action === "schedule" ? "Why then" : "Why now", now, "now"),
    reasonBlock("Why this channel", channel, "channel"),
  ];
}

function candidates(decision) {
  const rows = (decision.candidates || []).slice().sort((a, b) =>
    (a.refused ? 1 : 0) - (b.refused ? 1 : 0) || (b.score ?? 0) - (a.score ?? 0));
  if (!rows.length) return empty("No candidate was considered.");
  const top = Math.max(...rows.map((c) => Math.abs(c.score ?? 0)), 1e-9);
  return table(["offer", "channel", "score", "send at", "parts of the score"], rows.map((c) => {
    const chosen = c.offer === decision.offer && c.channel === decision.channel && !c.refused;
    const silence = c.offer === "(silence)";
    const bar = h("span", {class: ["score-bar", (c.score ?? 0) < 0 && "negative"]});
    bar.style.width = `${Math.min(100, (Math.abs(c.score ?? 0) / top) * 100)}%`;
    return h("tr", {class: ["candidate", chosen && "chosen", c.refused && "refused",
      silence && "silence"]},
      h("td", null, h("span", {class: "offer"}, c.offer), chosen ? [" ", chip("chosen", "send")] : null,
        c.refused ? h("div", {class: "refused"}, "ruled out: ", c.refused) : null),
      h("td", null, c.channel ?? "—",
        c.channelReason ? h("div", {class: "muted small"}, c.channelReason) : null),
      h("td", {class: "n"}, h("span", {class: "score"}, c.refused ? "—" : fmt.score(c.score ?? 0)),
        c.refused ? null : bar),
      h("td", null, c.sendAtMs ? fmt.clock(c.sendAtMs) : "—"),
      h("td", null, c.refused ? null : partsOf(c.parts)));
  }), {class: "candidates"});
}

function bound(decision) {
  const lines = decision.bound || [];
  if (!lines.length) return empty("No constraint ruled anything out.");
  return h("ul", {class: "bound"}, lines.map((line) => {
    const at = line.indexOf(":");
    const check = at > 0 ? line.slice(0, at) : "constraint";
    return h("li", null, chip(check, "bound"), " ", at > 0 ? line.slice(at + 1).trim() : line);
  }));
}

function features(decision) {
  const entries = Object.entries(decision.features || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return null;
  return h("details", {class: "features"},
    h("summary", null, `What the policy saw (${entries.length} features)`),
    table(["feature", "value"], entries.map(([k, v]) =>
      h("tr", null, h("td", null, k), h("td", {class: "n"}, fmt.score(v))))));
}

async function deliveries(decision) {
  const box = h("section", {class: "deliveries"}, h("h4", null, "Deliveries"));
  if (decision.action === "silent") return null;
  try {
    const page = await optional("/api/deliveries" + query({decision: decision.decisionId}));
    if (page === null) {
      box.append(unavailable("Deliveries"));
    } else if (!page.deliveries.length) {
      box.append(empty(decision.holdout ? "Held out: nothing is sent." : "Nothing in the outbox."));
    } else {
      box.append(table(["channel", "state", "attempts", "provider", "reason", "updated"],
        page.deliveries.map((e) => h("tr", null,
          h("td", null, e.channel), h("td", null, chip(e.state, e.state)),
          h("td", {class: "n"}, e.attempts ?? 0), h("td", null, e.provider || "—"),
          h("td", null, e.reason || ""), h("td", null, fmt.time(e.updated_ms ?? e.updatedMs))))));
    }
  } catch (error) {
    box.append(failed("Deliveries", error));
  }
  return box;
}

/** Render the explanation of decision `id` into `container`. */
export async function showDecision(container, id) {
  container.replaceChildren(h("p", {class: "loading"}, "Loading the decision…"));
  let decision;
  try {
    decision = await api(`/api/decisions/${enc(id)}`);
  } catch (error) {
    container.replaceChildren(failed(`Decision ${id}`, error));
    return;
  }
  const head = h("header", {class: "explanation-head"},
    h("h3", null, "Decision ", chip(decision.action, decision.action),
      decision.status !== "decided" ? chip(decision.status.replace("_", " "), decision.status)
        : null),
    h("p", {class: "muted"}, `${decision.momentName} (${decision.momentKind}) at `,
      h("time", {title: fmt.iso(decision.atMs)}, fmt.time(decision.atMs)), " for ",
      customerLink(decision.customerId)));
  const facts = dl([
    ["Offer", decision.offer],
    ["Channel", decision.channel],
    ["Device", decision.device],
    ["Send at", decision.sendAtMs ? fmt.time(decision.sendAtMs) : null],
    ["Moment expires", decision.expiresMs ? fmt.time(decision.expiresMs) : null],
    ["Score", decision.action === "silent" ? null : fmt.score(decision.score)],
    ["Probability of this pick", fmt.pct(decision.probability, 1)],
    ["Holdout", decision.holdout ? `${decision.holdout} control group: logged, not sent` : null],
    ["Decision id", decision.decisionId],
    ["Moment id", decision.momentId],
  ]);
  container.replaceChildren(h("article", {class: "explanation", dataset: {id: decision.decisionId}},
    head, facts, ...explain(decision),
    h("section", {class: "why"}, h("h4", null, "Candidates"), candidates(decision)),
    h("section", {class: "why"}, h("h4", null, "Constraints that bound"), bound(decision)),
    features(decision)));
  const sent = await deliveries(decision);
  if (sent) container.querySelector(".explanation")?.append(sent);
}
