// One customer: profile, devices, journeys, moments, decisions and messages, the
// models' predictions, and where they have been.
import {api, optional, enc, query, ApiError} from "./api.js";
import {h, chip, dl, fmt, table, empty, failed, unavailable, route} from "./dom.js";
import {bars, weekHeatmap} from "./charts.js";
import {drawMap, positionOf} from "./geo.js";

function section(title, ...body) {
  return h("section", {class: "card"}, h("h3", null, title), ...body);
}

function value(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function profileCard(profile) {
  const traits = Object.entries(profile.traits || {});
  const consent = Object.entries(profile.consent || {});
  return section("Profile",
    dl([
      ["Customer id", profile.customerId],
      ["userId", profile.userId],
      ["Time zone", profile.timezone],
      ["Locale", profile.locale],
      ["First seen", fmt.time(profile.firstSeen)],
      ["Last seen", fmt.time(profile.lastSeen)],
      ["Merged from", (profile.mergedFrom || []).join(", ")],
      ["Calls", Object.entries(profile.counts || {}).map(([k, n]) => `${k} ${n}`).join(", ")],
    ]),
    h("h4", null, "Identities"),
    h("p", {class: "identities"}, (profile.identities || []).map((i) =>
      h("span", {class: "identity"}, chip(i.kind), " ", i.value))),
    h("h4", null, "Traits"),
    traits.length ? table(["trait", "value"], traits.map(([k, v]) =>
      h("tr", null, h("td", null, k), h("td", null, value(v))))) : empty("No traits."),
    h("h4", null, "Addresses"),
    dl(Object.entries(profile.addresses || {}).map(([kind, list]) => [kind, list.join(", ")])),
    h("h4", null, "Consent"),
    consent.length ? table(["scope", "granted", "source", "at"], consent.map(([k, v]) =>
      h("tr", null, h("td", null, k),
        h("td", null, chip(v.granted ? "yes" : "no", v.granted ? "send" : "silent")),
        h("td", null, v.source ?? "—"), h("td", null, v.at ? fmt.time(v.at) : "—"))))
      : empty("Nothing recorded."));
}

function devicesCard(profile, predictions) {
  const devices = profile.devices || [];
  const affinity = predictions ? predictions.devices || {} : {};
  return section("Devices",
    devices.length ? table(["device", "type", "model", "os", "app", "push", "affinity",
      "last seen"],
    devices.map((d) => h("tr", {class: predictions?.activeDevice === d.id ? "active" : null},
      h("td", null, d.id ?? "—",
        predictions?.activeDevice === d.id ? [" ", chip("active now", "send")] : null),
      h("td", null, d.type ?? "—"),
      h("td", null, [d.manufacturer, d.model].filter(Boolean).join(" ") || "—"),
      h("td", null, d.os ?? "—"), h("td", null, d.app ?? "—"),
      h("td", null, d.token ? "token" : "—"),
      h("td", {class: "n"}, affinity[d.id] !== undefined ? fmt.pct(affinity[d.id]) : "—"),
      h("td", null, d.last_seen ? fmt.time(d.last_seen) : "—"))))
      : empty("No device seen."));
}

function predictionsCard(p) {
  if (!p) return section("Model predictions", unavailable("Predictions"));
  const ranked = (list) => list.length
    ? h("ol", {class: "ranked"}, list.map((r) => h("li", null, r.token, " ",
      h("span", {class: "muted"}, fmt.pct(r.p)))))
    : empty("Nothing yet.");
  return section("Model predictions",
    h("div", {class: "gauges"},
      gauge("Purchase propensity", p.propensity),
      gauge("Engages now", p.engageNow),
      gauge("Fatigue", p.fatigue, "warn")),
    dl([
      ["Best channel", p.bestChannel],
      ["Active device", p.activeDevice],
      ["Best hour (local)", `${String(p.receptivity.bestHour % 24).padStart(2, "0")}:00, ` +
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][Math.floor(p.receptivity.bestHour / 24)] +
        ` (${p.receptivity.timezone})`],
      ["As of", fmt.time(p.at)],
    ]),
    h("h4", null, "Channel affinity"),
    bars(Object.entries(p.channels || {}).map(([k, v]) => [k, v, fmt.pct(v)]), {max: 1}),
    h("h4", null, "Receptivity by local hour of the week"),
    weekHeatmap(p.receptivity.weekly || []),
    h("div", {class: "two"},
      h("div", null, h("h4", null, "Next touchpoints"), ranked(p.nextTouchpoints || [])),
      h("div", null, h("h4", null, "Next categories"), ranked(p.nextCategories || []))));
}

function gauge(label, v, kind) {
  const fill = h("span", {class: ["gauge-fill", kind]});
  fill.style.width = `${Math.max(0, Math.min(1, v ?? 0)) * 100}%`;
  return h("div", {class: "gauge"}, h("span", {class: "gauge-label"}, label),
    h("span", {class: "gauge-track"}, fill), h("span", {class: "gauge-value"}, fmt.pct(v)));
}

function journeysCard(runs) {
  return section("Journeys", runs.length ? table(["journey", "run", "stage", "stages entered",
    "last touchpoints", "started", "updated", "completed"],
  runs.map((r) => h("tr", null,
    h("td", null, h("a", {href: route("journeys", r.journey)}, r.journey)),
    h("td", {class: "n"}, r.run), h("td", null, chip(r.stage || "—", "stage")),
    h("td", null, Object.keys(r.entered || {}).join(" › ")),
    h("td", null, (r.path || []).join(" › ")),
    h("td", null, r.startedMs ? fmt.time(r.startedMs) : "—"),
    h("td", null, fmt.time(r.updatedMs)),
    h("td", null, r.completedMs ? fmt.time(r.completedMs) : "—"))))
    : empty("In no journey."));
}

function momentsCard(moments) {
  return section(`Moments (${moments.length}${moments.length === 50 ? "+" : ""})`,
    moments.length ? table(["at", "kind", "name", "confidence", "where", "details", "expires"],
      moments.map((m) => h("tr", {class: "moment-row"},
        h("td", null, fmt.time(m.atMs)), h("td", null, chip(m.kind, m.kind)),
        h("td", null, m.name), h("td", {class: "n"}, fmt.pct(m.confidence, 0)),
        h("td", null, (m.context?.places || []).join(", ")),
        h("td", null, Object.entries(m.details || {}).map(([k, v]) => `${k}: ${value(v)}`)
          .join(" · ")),
        h("td", null, fmt.time(m.expiresMs)))))
      : empty("No moment yet."));
}

function decisionsCard(decisions, deliveries) {
  const sent = new Map();
  for (const entry of deliveries || []) sent.set(entry.decision_id ?? entry.decisionId, entry);
  return section(`Decisions and messages (${decisions.length})`,
    decisions.length ? table(["at", "action", "offer", "channel", "status", "message", "why"],
      decisions.map((d) => {
        const entry = sent.get(d.decisionId);
        return h("tr", {class: "decision-row"},
          h("td", null, h("a", {href: route("decision", d.decisionId)}, fmt.time(d.atMs))),
          h("td", null, chip(d.action, d.action)), h("td", null, d.offer ?? "—"),
          h("td", null, d.channel ?? "—"), h("td", null, d.status),
          h("td", null, entry ? chip(entry.state, entry.state) : deliveries === null ? "n/a" : "—"),
          h("td", {class: "muted"}, (d.reasons || [])[0] ?? ""));
      }))
      : empty("No decision yet."));
}

/** Every position the customer's events carry, oldest first (first pages of the log). */
async function trail(customerId) {
  const points = [];
  let cursor = null;
  for (let page = 0; page < 5; page++) {
    const found = await api("/api/events" + query({customer: customerId, limit: 1000, cursor}));
    for (const event of found.events) {
      const where = positionOf(event.context?.location);
      if (where) points.push({...where, at: Date.parse(event.timestamp)});
    }
    if (!found.next) break;
    cursor = found.next;
  }
  return points;
}

async function whereCard(customerId, profile) {
  const card = section("Where");
  try {
    const [playbook, points] = await Promise.all([
      optional("/api/playbook"), trail(customerId)]);
    const last = positionOf(profile.lastLocation);
    const shown = points.slice(-200);
    const positions = last ? [{id: customerId, ...last, label: "last known position"}]
      : shown.length ? [{id: customerId, ...shown[shown.length - 1]}] : [];
    card.append(drawMap({places: playbook?.places || [], positions,
      trail: shown.map((p) => [p.lat, p.lon]), height: 300}),
    h("p", {class: "muted"}, shown.length
      ? `${shown.length} positions from the customer's events; the line joins them in order.`
      : "No event of this customer carries a location."));
  } catch (error) {
    card.append(failed("Positions", error));
  }
  return card;
}

/** Render customer `id` (any identifier) into `container`. */
export async function showCustomer(container, id) {
  container.replaceChildren(h("p", {class: "loading"}, `Loading customer ${id}…`));
  let profile;
  try {
    profile = await api(`/api/profiles/${enc(id)}`);
  } catch (error) {
    const text = error instanceof ApiError && error.status === 404
      ? `No customer is known by “${id}”.` : null;
    container.replaceChildren(text ? h("p", {class: "error"}, text) : failed("Customer", error));
    return;
  }
  const customer = profile.customerId;
  const [runs, moments, decisions, deliveries, predictions] = await Promise.all([
    api(`/api/customers/${enc(customer)}/journeys`).catch(() => []),
    api("/api/moments" + query({customer, limit: 50})).then((p) => p.moments).catch(() => []),
    api("/api/decisions" + query({customer, limit: 50})).then((p) => p.decisions)
      .catch(() => []),
    optional("/api/deliveries" + query({customer, limit: 100})).then((p) => p && p.deliveries)
      .catch(() => null),
    optional(`/api/customers/${enc(customer)}/predictions`).catch(() => null),
  ]);
  const title = profile.traits?.name || [profile.traits?.first_name, profile.traits?.last_name]
    .filter(Boolean).join(" ") || profile.userId || customer;
  container.replaceChildren(h("article", {class: "customer-profile", dataset: {customer}},
    h("header", {class: "customer-head"}, h("h2", null, title),
      h("p", {class: "muted"}, customer, profile.userId ? ` · userId ${profile.userId}` : "")),
    h("div", {class: "grid-2"},
      h("div", null, profileCard(profile), devicesCard(profile, predictions),
        journeysCard(runs)),
      h("div", null, predictionsCard(predictions), h("div", {class: "where-slot"}))),
    momentsCard(moments),
    decisionsCard(decisions, deliveries)));
  const slot = container.querySelector(".where-slot");
  slot.replaceWith(await whereCard(customer, profile));
}
