// Places, geofences and customer positions drawn as SVG in an equirectangular
// projection around the middle of what is shown: x = lon·cos(lat₀), y = −lat, in
// degrees. No tiles, nothing fetched from outside, so it works offline.
import {s, h, fmt} from "./dom.js";

const METRES_PER_DEGREE = 111_320;
const NICE = [1, 2, 5];

function nice(target) {
  const power = 10 ** Math.floor(Math.log10(target));
  for (const n of NICE) if (n * power >= target) return n * power;
  return 10 * power;
}

function placePoints(place) {
  if (place.circle) {
    const {lat, lon, radius_m: r} = place.circle;
    const dLat = r / METRES_PER_DEGREE;
    const dLon = dLat / Math.max(0.01, Math.cos((lat * Math.PI) / 180));
    return [[lat - dLat, lon - dLon], [lat + dLat, lon + dLon]];
  }
  return (place.polygon || []).map(([lat, lon]) => [lat, lon]);
}

function center(place) {
  if (place.circle) return [place.circle.lat, place.circle.lon];
  const points = place.polygon || [];
  if (!points.length) return null;
  return [points.reduce((a, p) => a + p[0], 0) / points.length,
    points.reduce((a, p) => a + p[1], 0) / points.length];
}

const NEAR_M = 25_000; // positions further than this from every place are left off the map

function distanceM([lat1, lon1], [lat2, lon2]) {
  const k = Math.cos((((lat1 + lat2) / 2) * Math.PI) / 180);
  return Math.hypot(lat1 - lat2, (lon1 - lon2) * k) * METRES_PER_DEGREE;
}

/** Which positions the map shows: those near a place (all of them if there is no place). */
export function nearPlaces(places, positions) {
  const centers = places.map(center).filter(Boolean);
  if (!centers.length) return {shown: positions, away: []};
  const shown = [];
  const away = [];
  for (const p of positions) {
    const near = centers.some((c) => distanceM(c, [p.lat, p.lon]) <= NEAR_M);
    (near ? shown : away).push(p);
  }
  return {shown, away};
}

/**
 * The map: places (circles and polygons) with their recent activity, customer
 * positions (a dot with its accuracy), an optional trail. onPick(customerId) on a click.
 * Positions far from every place (a customer abroad) are left off, so the places stay
 * readable; the caption says how many.
 */
export function drawMap({places = [], positions = [], trail = [], activity = new Map(),
  onPick = null, height = 420} = {}) {
  const {shown, away} = nearPlaces(places, positions);
  positions = shown;
  trail = nearPlaces(places, trail.map(([lat, lon]) => ({lat, lon}))).shown
    .map((p) => [p.lat, p.lon]);
  const points = [
    ...places.flatMap(placePoints),
    ...positions.map((p) => [p.lat, p.lon]),
    ...trail,
  ].filter(([lat, lon]) => Number.isFinite(lat) && Number.isFinite(lon));
  if (!points.length) {
    return h("p", {class: "empty"}, away.length
      ? `${away.length} positions, all far from the playbook's places.` : "Nothing to draw yet.");
  }
  const lats = points.map((p) => p[0]);
  const lons = points.map((p) => p[1]);
  const lat0 = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((lat0 * Math.PI) / 180);
  const project = ([lat, lon]) => [lon * k, -lat];
  const xs = lons.map((lon) => lon * k);
  const ys = lats.map((lat) => -lat);
  let minX = Math.min(...xs);
  let maxX = Math.max(...xs);
  let minY = Math.min(...ys);
  let maxY = Math.max(...ys);
  const least = 400 / METRES_PER_DEGREE; // never closer than ~400 m across
  if (maxX - minX < least) [minX, maxX] = [(minX + maxX) / 2 - least / 2, (minX + maxX) / 2 + least / 2];
  if (maxY - minY < least) [minY, maxY] = [(minY + maxY) / 2 - least / 2, (minY + maxY) / 2 + least / 2];
  const pad = Math.max(maxX - minX, maxY - minY) * 0.08;
  const box = {x: minX - pad, y: minY - pad, w: maxX - minX + 2 * pad, h: maxY - minY + 2 * pad};
  const unit = Math.max(box.w, box.h);
  const dot = unit / 140;
  const font = unit / 55;

  const svg = s("svg", {class: "map", viewBox: `${box.x} ${box.y} ${box.w} ${box.h}`,
    preserveAspectRatio: "xMidYMid meet", role: "img", height,
    "aria-label": "places, geofences and recent customer positions"});
  const layer = s("g", {class: "map-layer"});
  // Background and graticule reach far past the box: the element's shape is not the box's.
  const far = {x: box.x - 10 * unit, y: box.y - 10 * unit, size: 21 * unit};
  svg.append(s("rect", {class: "map-bg", x: far.x, y: far.y, width: far.size, height: far.size}),
    layer);

  // Graticule, every nice step in degrees.
  const step = nice(unit / 6);
  const grid = s("g", {class: "graticule"});
  for (let lon = Math.floor(far.x / k / step) * step; lon * k <= far.x + far.size; lon += step) {
    grid.append(s("line", {x1: lon * k, x2: lon * k, y1: far.y, y2: far.y + far.size,
      "vector-effect": "non-scaling-stroke"}));
  }
  for (let lat = Math.floor(-(far.y + far.size) / step) * step; -lat >= far.y; lat += step) {
    grid.append(s("line", {x1: far.x, x2: far.x + far.size, y1: -lat, y2: -lat,
      "vector-effect": "non-scaling-stroke"}));
  }
  layer.append(grid);

  for (const place of places) {
    const c = center(place);
    if (!c) continue;
    const [cx, cy] = project(c);
    const busy = activity.get(place.id) ?? 0;
    const shape = place.circle
      ? s("circle", {cx, cy, r: place.circle.radius_m / METRES_PER_DEGREE})
      : s("polygon", {points: place.polygon.map((p) => project(p).join(",")).join(" ")});
    shape.setAttribute("vector-effect", "non-scaling-stroke");
    const group = s("g", {class: ["place", `place-${place.kind}`, busy && "busy"],
      dataset: {place: place.id}},
      shape,
      s("circle", {class: "place-center", cx, cy, r: dot * 0.6}),
      s("text", {x: cx, y: cy - dot * 1.8, "font-size": font, "text-anchor": "middle"},
        place.name || place.id, busy ? ` · ${busy}` : ""),
      s("title", null, `${place.name || place.id} (${place.kind})` +
        (place.circle ? `, ${place.circle.radius_m} m` : ", polygon") +
        (busy ? `, ${busy} recent place moments` : "")));
    layer.append(group);
  }

  if (trail.length > 1) {
    layer.append(s("polyline", {class: "trail", "vector-effect": "non-scaling-stroke",
      points: trail.map((p) => project(p).join(",")).join(" ")}));
  }

  for (const position of positions) {
    if (!Number.isFinite(position.lat) || !Number.isFinite(position.lon)) continue;
    const [x, y] = project([position.lat, position.lon]);
    const group = s("g", {class: ["position", onPick && "pickable"], dataset: {customer: position.id}},
      position.accuracy ? s("circle", {class: "accuracy", cx: x, cy: y,
        r: position.accuracy / METRES_PER_DEGREE, "vector-effect": "non-scaling-stroke"}) : null,
      s("circle", {class: "dot", cx: x, cy: y, r: dot}),
      s("title", null, `${position.label ?? position.id}` +
        (position.at ? ` — ${fmt.time(position.at)}` : "") +
        (position.accuracy ? ` (±${Math.round(position.accuracy)} m)` : "")));
    if (onPick) group.addEventListener("click", () => onPick(position.id));
    layer.append(group);
  }

  // Scale bar, bottom left, in km.
  const km = nice((box.w * METRES_PER_DEGREE) / 5 / 1000);
  const length = (km * 1000) / METRES_PER_DEGREE;
  const sx = box.x + box.w * 0.04;
  const sy = box.y + box.h * 0.95;
  svg.append(s("g", {class: "scale"},
    s("line", {x1: sx, x2: sx + length, y1: sy, y2: sy, "vector-effect": "non-scaling-stroke"}),
    s("text", {x: sx, y: sy - font * 0.5, "font-size": font}, km < 1 ? `${km * 1000} m` : `${km} km`)));
  zoomable(svg, box);
  if (!away.length) return svg;
  return h("figure", {class: "map-figure"}, svg, h("figcaption", {class: "muted"},
    `${away.length} more ${away.length === 1 ? "position is" : "positions are"} more than ` +
    `${NEAR_M / 1000} km from every place, off this map.`));
}

/** Wheel to zoom around the pointer, drag to pan, double-click to reset. */
function zoomable(svg, home) {
  let view = {...home};
  const apply = () => svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
  const toView = (event) => {
    const rect = svg.getBoundingClientRect();
    const scale = Math.max(view.w / rect.width, view.h / rect.height);
    const offsetX = (rect.width * scale - view.w) / 2;
    const offsetY = (rect.height * scale - view.h) / 2;
    return [view.x - offsetX + (event.clientX - rect.left) * scale,
      view.y - offsetY + (event.clientY - rect.top) * scale, scale];
  };
  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [px, py] = toView(event);
    const f = event.deltaY > 0 ? 1.25 : 0.8;
    view = {x: px - (px - view.x) * f, y: py - (py - view.y) * f, w: view.w * f, h: view.h * f};
    apply();
  }, {passive: false});
  let drag = null;
  svg.addEventListener("pointerdown", (event) => {
    if (event.target.closest(".pickable")) return;
    drag = {x: event.clientX, y: event.clientY, view: {...view}, scale: toView(event)[2]};
    svg.setPointerCapture(event.pointerId);
  });
  svg.addEventListener("pointermove", (event) => {
    if (!drag) return;
    view = {...drag.view, x: drag.view.x - (event.clientX - drag.x) * drag.scale,
      y: drag.view.y - (event.clientY - drag.y) * drag.scale};
    apply();
  });
  svg.addEventListener("pointerup", () => {
    drag = null;
  });
  svg.addEventListener("dblclick", () => {
    view = {...home};
    apply();
  });
}

/** A position from a profile's lastLocation or an event's context.location. */
export function positionOf(location) {
  if (!location || typeof location !== "object") return null;
  const lat = Number(location.latitude ?? location.lat);
  const lon = Number(location.longitude ?? location.lon ?? location.lng);
  if (!Number.isFinite(lat) || !Number.isFinite(lon) || Math.abs(lat) > 90 || Math.abs(lon) > 180) {
    return null;
  }
  const accuracy = Number(location.accuracy);
  return {lat, lon, accuracy: Number.isFinite(accuracy) ? accuracy : null};
}
