// Journey funnels and top paths, from GET /api/journeys and /api/journeys/{name}.
import {api, enc} from "./api.js";
import {h, chip, fmt, table, empty, failed, route} from "./dom.js";

function funnel(report) {
  const top = Math.max(report.customers, 1);
  return h("div", {class: "funnel"}, report.stages.map((stage) => {
    const fill = h("span", {class: ["funnel-fill", stage.name === report.goal && "goal"]});
    fill.style.width = `${(stage.reached / top) * 100}%`;
    return h("div", {class: "funnel-row", dataset: {stage: stage.name}},
      h("span", {class: "funnel-name"}, stage.name, stage.name === report.goal ? " ★" : ""),
      h("span", {class: "funnel-track"}, fill),
      h("span", {class: "funnel-n"}, fmt.num(stage.reached)),
      h("span", {class: "funnel-conv", title: "reached, of those who reached the stage before"},
        stage.conversion === null ? "" : fmt.pct(stage.conversion)),
      h("span", {class: "funnel-time", title: "median time from the stage before"},
        stage.medianMs === null ? "" : fmt.duration(stage.medianMs)),
      h("span", {class: "funnel-drop", title: "dropped off here (timed out)"},
        stage.dropOff ? `−${stage.dropOff}` : ""),
      h("span", {class: "funnel-active", title: "still active here"},
        stage.active ? `${stage.active} active` : ""));
  }));
}

function paths(report) {
  if (!report.topPaths.length) return empty("No path yet.");
  return table(["path", "customers", "share"], report.topPaths.map((p) => h("tr", null,
    h("td", null, p.stages.map((name, i) => [i ? " › " : "", chip(name, "stage")])),
    h("td", {class: "n"}, fmt.num(p.customers)), h("td", {class: "n"}, fmt.pct(p.share)))));
}

export async function showJourneys(container, selected) {
  container.replaceChildren(h("p", {class: "loading"}, "Loading journeys…"));
  let journeys;
  try {
    journeys = await api("/api/journeys");
  } catch (error) {
    container.replaceChildren(failed("Journeys", error));
    return;
  }
  if (!journeys.length) {
    container.replaceChildren(empty("The playbook declares no journey."));
    return;
  }
  const reports = await Promise.all(journeys.map((j) =>
    api(`/api/journeys/${enc(j.name)}`).catch((error) => ({error}))));
  const cards = journeys.map((journey, i) => {
    const report = reports[i];
    if (report.error) return h("section", {class: "card"}, failed(journey.name, report.error));
    return h("section", {class: ["card", "journey", journey.name === selected && "selected"],
      id: `journey-${journey.name}`, dataset: {journey: journey.name}},
      h("h3", null, h("a", {href: route("journeys", journey.name)}, journey.title || journey.name)),
      h("p", {class: "muted"}, `${fmt.num(report.customers)} customers, ${fmt.num(report.runs)} ` +
        `runs; ${fmt.num(report.completed)} reached ${report.goal} ` +
        `(${fmt.pct(report.conversion)}), median ${fmt.duration(report.medianMsToGoal)} to get there`),
      h("div", {class: "funnel-head"}, h("span", null, "stage"), h("span", null, ""),
        h("span", null, "reached"), h("span", null, "from prev."), h("span", null, "median"),
        h("span", null, "dropped"), h("span", null, "")),
      funnel(report),
      h("h4", null, "Top paths"),
      paths(report));
  });
  container.replaceChildren(...cards);
  if (selected) container.querySelector(`[data-journey="${CSS.escape(selected)}"]`)?.scrollIntoView();
}
