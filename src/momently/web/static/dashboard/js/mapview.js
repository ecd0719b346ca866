// The map page: the playbook's places and geofences, and where recent customers are.
import {api, optional, enc} from "./api.js";
import {h, fmt, failed, unavailable, route, customerLink, table} from "./dom.js";
import {drawMap, positionOf} from "./geo.js";

const CACHE_MS = 15_000;
const cache = new Map(); // customer -> {at, position}

async function position(customer) {
  const known = cache.get(customer);
  if (known && Date.now() - known.at < CACHE_MS) return known.position;
  let found = null;
  try {
    const profile = await api(`/api/profiles/${enc(customer)}`);
    const where = positionOf(profile.lastLocation);
    if (where) found = {id: customer, ...where, at: profile.lastSeen};
  } catch {
    found = null;
  }
  cache.set(customer, {at: Date.now(), position: found});
  return found;
}

/** Customers from the feed first, then from the latest moments, up to `limit`. */
async function recentCustomers(feed, limit) {
  const ids = feed.recentCustomers(limit);
  if (ids.length < limit) {
    try {
      const page = await api(`/api/moments?limit=200`);
      for (const moment of page.moments) {
        if (!ids.includes(moment.customerId)) ids.push(moment.customerId);
        if (ids.length >= limit) break;
      }
    } catch {
      // the feed's customers are still shown
    }
  }
  return ids;
}

async function inBatches(items, size, fn) {
  const out = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(...await Promise.all(items.slice(i, i + size).map(fn)));
  }
  return out;
}

export async function showMap(container, feed) {
  container.replaceChildren(h("p", {class: "loading"}, "Loading places…"));
  let playbook;
  try {
    playbook = await optional("/api/playbook");
  } catch (error) {
    container.replaceChildren(failed("Playbook", error));
    return;
  }
  if (playbook === null) {
    container.replaceChildren(unavailable("The playbook"));
    return;
  }
  const places = playbook.places || [];
  const customers = await recentCustomers(feed, 60);
  const positions = (await inBatches(customers, 8, position)).filter(Boolean);
  const activity = feed.placeActivity();
  const map = drawMap({places, positions, activity, height: 520,
    onPick: (id) => { location.hash = route("customer", id); }});
  container.replaceChildren(
    h("div", {class: "map-wrap"}, map),
    h("p", {class: "muted"}, `${places.length} places; ${positions.length} of the ` +
      `${customers.length} most recent customers have a known position. Scroll to zoom, drag ` +
      "to pan, double-click to reset."),
    h("div", {class: "grid-2"},
      h("section", {class: "card"}, h("h3", null, "Places"),
        table(["place", "kind", "geofence", "dwell", "beacons", "recent moments"],
          places.map((p) => h("tr", {dataset: {place: p.id}},
            h("td", null, p.name || p.id), h("td", null, p.kind ?? "—"),
            h("td", null, p.circle ? `circle ${p.circle.radius_m} m`
              : `polygon, ${(p.polygon || []).length} points`),
            h("td", null, typeof p.dwell === "number" ? fmt.duration(p.dwell) : p.dwell ?? "—"), h("td", {class: "n"}, (p.beacons || []).length),
            h("td", {class: "n"}, activity.get(p.id) ?? 0))))),
      h("section", {class: "card"}, h("h3", null, "Recent positions"),
        positions.length ? table(["customer", "latitude", "longitude", "accuracy", "last seen"],
          positions.map((p) => h("tr", null, h("td", null, customerLink(p.id)),
            h("td", {class: "n"}, p.lat.toFixed(5)), h("td", {class: "n"}, p.lon.toFixed(5)),
            h("td", {class: "n"}, p.accuracy ? `±${Math.round(p.accuracy)} m` : "—"),
            h("td", null, fmt.time(p.at)))))
          : h("p", {class: "empty"}, "No recent customer has a known position."))));
}
