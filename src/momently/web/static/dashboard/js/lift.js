// Lift against the holdout per offer, moment kind and channel, with intervals (GET /api/lift).
import {optional, query} from "./api.js";
import {h, fmt, table, empty, failed, unavailable} from "./dom.js";
import {interval} from "./charts.js";

const DIMENSIONS = [["all", "Overall"], ["offer", "By offer"], ["moment_kind", "By moment kind"],
  ["channel", "By channel"]];

function arm(a) {
  return [h("td", {class: "n"}, fmt.num(a.customers)),
    h("td", {class: "n"}, `${fmt.pct(a.rate)}`, h("span", {class: "muted"}, ` (${a.converted})`))];
}

function rows(segments) {
  const diffs = segments.flatMap((s) => s.rateDiff ? [s.rateDiff.low, s.rateDiff.high] : []);
  const bound = Math.max(0.01, ...diffs.map(Math.abs));
  return segments.map((s) => {
    const d = s.rateDiff;
    const r = s.revenuePerCustomerDiff;
    return h("tr", {class: "lift-row", dataset: {dimension: s.dimension, value: s.value}},
      h("td", null, s.dimension === "all" ? "all decisions" : s.value),
      ...arm(s.treated), ...arm(s.heldOut),
      h("td", {class: "n"}, d ? `${d.value >= 0 ? "+" : ""}${fmt.pct(d.value)}` : "—"),
      h("td", {class: "n muted"}, d ? `${fmt.pct(d.low)} … ${fmt.pct(d.high)}` : "too few"),
      h("td", null, d ? interval(d.value, d.low, d.high, {lo: -bound, hi: bound}) : null),
      h("td", {class: "n"}, s.relativeRate === null ? "—" : fmt.pct(s.relativeRate, 0)),
      h("td", {class: "n"}, r ? `${fmt.num(r.value, 2)} (${fmt.num(r.low, 2)} … ${fmt.num(r.high, 2)})`
        : "—"));
  });
}

export async function showLift(container, windowH = 72) {
  container.replaceChildren(h("p", {class: "loading"}, "Computing lift…"));
  let report;
  try {
    report = await optional("/api/lift" + query({window_h: windowH}));
  } catch (error) {
    container.replaceChildren(failed("Lift", error));
    return;
  }
  if (report === null) {
    container.replaceChildren(unavailable("Lift"));
    return;
  }
  const picker = h("select", {id: "lift-window", "aria-label": "attribution window",
    on: {change: (e) => showLift(container, Number(e.target.value))}},
  [24, 72, 168, 720].map((hours) => {
    const option = h("option", {value: hours}, hours < 168 ? `${hours} h` : `${hours / 24} days`);
    option.selected = hours === windowH;
    return option;
  }));
  const confidence = report.confidence ?? 0.95;
  const head = h("div", {class: "lift-head"},
    h("label", null, "Attribution window ", picker),
    h("p", {class: "muted"}, `Decisions that act: ${fmt.num(report.decisions)}; ` +
      `conversions: ${fmt.num(report.conversions)} (${fmt.num(report.attributed)} attributed, ` +
      `${fmt.num(report.unattributed)} with no decision in the window). Treated against held ` +
      `out, per customer; ${fmt.pct(confidence, 0)} intervals. An interval that excludes 0 is ` +
      "coloured."));
  const sections = DIMENSIONS.map(([dimension, title]) => {
    const segments = (report.segments || []).filter((s) => s.dimension === dimension);
    return h("section", {class: "card", dataset: {dimension}}, h("h3", null, title),
      segments.length ? table(["", "treated", "rate", "held out", "rate", "rate diff",
        "interval", "", "relative", "revenue / customer diff"], rows(segments), {class: "lift"})
        : empty("No decision yet."));
  });
  container.replaceChildren(head, ...sections);
}
