// The dashboard: asks for the admin key once (kept in sessionStorage), then shows the
// live feed and the views, all through the documented admin API.
import {api, adminKey, setAdminKey, forgetAdminKey, onUnauthorized, ApiError} from "./api.js";
import {h, route} from "./dom.js";
import {Feed} from "./feed.js";
import {LiveConnection} from "./live.js";
import {Ingestion} from "./metrics.js";
import {showDecision} from "./decision.js";
import {showCustomer} from "./customer.js";
import {showMap} from "./mapview.js";
import {showJourneys} from "./journeys.js";
import {showLift} from "./lift.js";
import {showFatigue, showIngestion, tiles} from "./health.js";

const $ = (selector) => document.querySelector(selector);
const VIEWS = ["live", "customer", "map", "journeys", "lift", "fatigue", "ingestion"];

const feed = new Feed($("#feed"), {
  onOpenDecision: (id) => { location.hash = route("decision", id); },
});
const ingestion = new Ingestion(5000);
const live = new LiveConnection({
  onEvent(kind, payload) {
    if (kind === "moment" || kind === "decision") {
      feed.add(kind, payload);
      ingestion.nudge();
    }
    else if (kind === "cancelled") feed.cancelled(payload);
    else if (kind === "rate") ingestion.live(payload);
    else if (kind === "dropped") feed.dropped(payload);
  },
  onStatus(status, text) {
    const pill = $("#conn");
    pill.className = `pill status-${status}`;
    pill.textContent = text;
    pill.dataset.status = status;
  },
});
let started = false;

function showLogin(message) {
  $("#login").hidden = false;
  $("#app").inert = true;
  $("#login-error").textContent = message || "";
  $("#key").value = "";
  $("#key").focus();
}

function stop() {
  live.stop();
  ingestion.stop();
  started = false;
}

onUnauthorized(() => {
  forgetAdminKey();
  stop();
  showLogin("The admin key was refused. Enter it again.");
});

async function login(key) {
  setAdminKey(key);
  try {
    await api("/api/stats");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      forgetAdminKey();
      showLogin(`Could not reach the engine: ${error.message}`);
    }
    return;
  }
  $("#login").hidden = true;
  $("#app").inert = false;
  start();
}

async function start() {
  if (started) return;
  started = true;
  const [moments, decisions] = await Promise.all([
    api("/api/moments?limit=100").then((p) => p.moments).catch(() => []),
    api("/api/decisions?limit=100").then((p) => p.decisions).catch(() => []),
  ]);
  for (const moment of moments) feed.add("moment", moment);
  for (const decision of decisions) feed.add("decision", decision);
  live.start();
  ingestion.start();
  show();
}

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean)
    .map((part) => {
      try {
        return decodeURIComponent(part);
      } catch {
        return part;
      }
    });
  return {page: parts[0] || "live", arg: parts[1] ?? null};
}

function show() {
  if (!adminKey()) return;
  const {page, arg} = parseHash();
  const view = page === "decision" ? "live" : VIEWS.includes(page) ? page : "live";
  for (const section of document.querySelectorAll("[data-view]")) {
    section.hidden = section.dataset.view !== view;
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.nav === view);
  }
  if (page === "decision" && arg) {
    feed.selected(arg);
    showDecision($("#detail"), arg);
  } else if (view === "live") {
    feed.selected(null);
  } else if (view === "customer") {
    if (arg) {
      $("#customer-search input").value = arg;
      showCustomer($("#customer-view"), arg);
    } else {
      $("#customer-view").replaceChildren(h("p", {class: "empty"},
        "Enter any identifier of a customer (customer id, userId, anonymousId, device id, " +
        "email or phone), or click one in the feed."));
    }
  } else if (view === "map") {
    showMap($("#map-view"), feed);
  } else if (view === "journeys") {
    showJourneys($("#journeys-view"), arg);
  } else if (view === "lift") {
    showLift($("#lift-view"));
  } else if (view === "fatigue") {
    showFatigue($("#fatigue-view"));
  } else if (view === "ingestion") {
    showIngestion($("#ingestion-view"), ingestion.snapshot, ingestion);
  }
}

ingestion.onChange((snapshot) => {
  $("#tiles").replaceChildren(...tiles(snapshot, ingestion));
  if (parseHash().page === "ingestion") showIngestion($("#ingestion-view"), snapshot, ingestion);
});

feed.onChange(() => {
  $("#feed-count").textContent = `${feed.items.size} shown · ${feed.counts.moments} moments, ` +
    `${feed.counts.decisions} decisions since this page opened`;
  const dropped = $("#dropped");
  dropped.hidden = feed.counts.dropped === 0;
  dropped.textContent = `${feed.counts.dropped} live events were dropped because this page ` +
    "fell behind; reload to catch up.";
});

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("#key").value.trim();
  if (key) login(key);
});
$("#logout").addEventListener("click", () => {
  forgetAdminKey();
  stop();
  showLogin("");
});
$("#customer-search").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = event.target.querySelector("input").value.trim();
  if (id) location.hash = route("customer", id);
});
$("#pause").addEventListener("click", (event) => {
  feed.setPaused(!feed.paused);
  event.target.textContent = feed.paused ? "Resume" : "Pause";
  event.target.setAttribute("aria-pressed", String(feed.paused));
});
for (const name of ["moment", "decision", "silent"]) {
  $(`#show-${name}`).addEventListener("change", (event) => feed.setFilter(name, event.target.checked));
}
window.addEventListener("hashchange", show);

if (adminKey()) login(adminKey());
else showLogin("");
