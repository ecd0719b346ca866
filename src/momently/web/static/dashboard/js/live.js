// The live feed: Server-Sent Events from /api/live, opened with a short-lived token
// (EventSource cannot send the admin key as a header). A server without /api/live is
// polled instead through /api/moments and /api/decisions, so the feed still moves.
import {api, query, ApiError} from "./api.js";

const KINDS = ["moment", "decision", "cancelled", "rate", "dropped"];
const POLL_MS = 3000;

export class LiveConnection {
  /** onEvent(kind, payload); onStatus("connecting" | "live" | "polling" | "offline", text). */
  constructor({onEvent, onStatus}) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.source = null;
    this.lastId = null;
    this.retryMs = 1000;
    this.timer = null;
    this.stopped = true;
    this.since = {moment: null, decision: null};
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.source) this.source.close();
    this.source = null;
  }

  later(fn, ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(fn, ms);
  }

  async connect() {
    if (this.stopped) return;
    this.onStatus("connecting", "connecting…");
    let token;
    try {
      token = await api("/api/live/token", {method: "POST"});
    } catch (error) {
      if (error instanceof ApiError && error.missing) {
        this.onStatus("polling", "polling (no live stream on this server)");
        this.poll();
        return;
      }
      if (error instanceof ApiError && error.status === 401) {
        this.onStatus("offline", "admin key refused");
        return; // the page asks for the key again and starts over
      }
      this.onStatus("offline", "offline — retrying");
      this.later(() => this.connect(), this.backoff());
      return;
    }
    if (this.stopped) return;
    const url = token.stream + (this.lastId ? `&after=${encodeURIComponent(this.lastId)}` : "");
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener("open", () => {
      this.retryMs = 1000;
      this.onStatus("live", "live");
    });
    for (const kind of KINDS) {
      source.addEventListener(kind, (event) => {
        if (event.lastEventId) this.lastId = event.lastEventId;
        let payload;
        try {
          payload = JSON.parse(event.data);
        } catch {
          return;
        }
        this.onEvent(kind, payload);
      });
    }
    source.addEventListener("error", () => {
      if (this.source !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        // Refused (the token ran out, the server restarted): ask for a new token.
        source.close();
        this.source = null;
        this.onStatus("connecting", "reconnecting…");
        this.later(() => this.connect(), this.backoff());
      } else {
        this.onStatus("connecting", "reconnecting…"); // the browser retries by itself
      }
    });
  }

  backoff() {
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 30_000);
    return wait;
  }

  async poll() {
    if (this.stopped) return;
    try {
      for (const kind of ["moment", "decision"]) {
        const path = kind === "moment" ? "/api/moments" : "/api/decisions";
        const page = await api(path + query({since: this.since[kind], limit: 200}));
        const items = page.moments || page.decisions || [];
        for (const item of items.slice().reverse()) {
          this.since[kind] = Math.max(this.since[kind] ?? 0, item.atMs);
          this.onEvent(kind, item);
        }
      }
      this.onStatus("polling", "polling every 3 s");
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;
      this.onStatus("offline", "offline — retrying");
    }
    this.later(() => this.poll(), POLL_MS);
  }
}
