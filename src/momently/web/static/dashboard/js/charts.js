// Small SVG charts drawn from numbers: sparkline, bars, intervals, a weekly heat map.
import {s, h, fmt} from "./dom.js";

/** A line of the last values; the newest on the right. */
export function sparkline(values, {width = 160, height = 36, label = ""} = {}) {
  const svg = s("svg", {class: "spark", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": label, preserveAspectRatio: "none"});
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length < 2) return svg;
  const max = Math.max(...finite, 1e-9);
  const step = width / (values.length - 1);
  const points = values.map((v, i) =>
    `${(i * step).toFixed(1)},${(height - 2 - (Number.isFinite(v) ? v : 0) / max * (height - 4)).toFixed(1)}`);
  svg.append(
    s("polyline", {class: "spark-area", points: `0,${height} ${points.join(" ")} ${width},${height}`}),
    s("polyline", {class: "spark-line", points: points.join(" ")}),
  );
  return svg;
}

/** Horizontal bars: rows of [label, value, text?]; widths relative to the largest. */
export function bars(rows, {format = (v) => fmt.num(v), max} = {}) {
  const top = max ?? Math.max(...rows.map(([, v]) => v), 1e-9);
  return h("div", {class: "bars"}, rows.map(([label, value, text]) => {
    const fill = h("span", {class: "bar-fill"});
    fill.style.width = `${Math.max(0, Math.min(1, value / top)) * 100}%`;
    return h("div", {class: "bar-row"},
      h("span", {class: "bar-label", title: String(label)}, label),
      h("span", {class: "bar-track"}, fill),
      h("span", {class: "bar-value"}, text ?? format(value)));
  }));
}

/** A point with its interval on a shared axis [lo, hi], zero marked. */
export function interval(value, low, high, {lo, hi, width = 180, height = 18}) {
  const svg = s("svg", {class: "interval", viewBox: `0 0 ${width} ${height}`, width, height});
  const span = hi - lo || 1;
  const x = (v) => Math.max(0, Math.min(width, ((v - lo) / span) * width));
  svg.append(s("line", {class: "axis-zero", x1: x(0), x2: x(0), y1: 0, y2: height}));
  if ([value, low, high].every(Number.isFinite)) {
    const excludesZero = low > 0 || high < 0;
    svg.append(
      s("line", {class: ["ci", excludesZero && (low > 0 ? "ci-up" : "ci-down")],
        x1: x(low), x2: x(high), y1: height / 2, y2: height / 2}),
      s("circle", {class: "ci-point", cx: x(value), cy: height / 2, r: 3.5}),
    );
  }
  return svg;
}

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/** 168 hourly values, Monday 00:00 first, as a 7 × 24 grid. */
export function weekHeatmap(weekly) {
  const cell = 12;
  const left = 30;
  const svg = s("svg", {class: "heatmap", viewBox: `0 0 ${left + 24 * cell} ${7 * cell + 14}`,
    role: "img", "aria-label": "receptivity by local hour of the week"});
  const max = Math.max(...weekly, 1e-9);
  DAYS.forEach((day, d) => {
    svg.append(s("text", {x: 0, y: d * cell + 9, class: "heat-label"}, day));
    for (let hour = 0; hour < 24; hour++) {
      const value = weekly[d * 24 + hour] ?? 0;
      svg.append(s("rect", {
        x: left + hour * cell, y: d * cell, width: cell - 1, height: cell - 1,
        class: "heat-cell", "fill-opacity": (0.08 + 0.92 * value / max).toFixed(3),
      }, s("title", null, `${day} ${String(hour).padStart(2, "0")}:00 — ${fmt.pct(value)}`)));
    }
  });
  for (const hour of [0, 6, 12, 18]) {
    svg.append(s("text", {x: left + hour * cell, y: 7 * cell + 11, class: "heat-label"},
      String(hour).padStart(2, "0")));
  }
  return svg;
}

/** A rising line of values kept to the last `size`. */
export class Series {
  constructor(size = 60) {
    this.size = size;
    this.values = [];
  }

  push(value) {
    this.values.push(value);
    if (this.values.length > this.size) this.values.shift();
  }

  get last() {
    return this.values.length ? this.values[this.values.length - 1] : null;
  }
}
