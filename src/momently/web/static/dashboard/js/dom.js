// Building the page from data, safely: every value that comes from the API goes
// into the document as text (text nodes, attribute values), never as markup.
// Links are internal hash routes only.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function setAttributes(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === "class") {
      const names = Array.isArray(value) ? value.filter(Boolean).join(" ") : String(value);
      if (names) node.setAttribute("class", names);
    } else if (key === "dataset") {
      for (const [name, data] of Object.entries(value)) node.dataset[name] = String(data);
    } else if (key === "href") {
      node.setAttribute("href", safeHref(value));
    } else if (key.toLowerCase().startsWith("on") || key === "style" || key === "src") {
      throw new Error(`attribute ${key} is not set from data`);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** An HTML element: h("td", {class: "n"}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

/** An SVG element, built the same way. */
export function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attrs);
  append(node, children);
  return node;
}

/** Only in-page routes are ever linked. */
export function safeHref(url) {
  return typeof url === "string" && url.startsWith("#/") ? url : "#/";
}

export function route(...parts) {
  return "#/" + parts.map((part) => encodeURIComponent(String(part))).join("/");
}

export function customerLink(id, label) {
  return h("a", {class: "customer-link", href: route("customer", id), title: `customer ${id}`},
    label ?? shortId(id));
}

export function shortId(id) {
  const text = String(id ?? "");
  return text.length > 18 ? text.slice(0, 8) + "…" + text.slice(-6) : text;
}

export function chip(text, kind) {
  return h("span", {class: ["chip", kind && `chip-${kind}`]}, text);
}

export function empty(text) {
  return h("p", {class: "empty"}, text);
}

export function unavailable(what) {
  return h("p", {class: "unavailable"}, `${what}: not available on this server`);
}

export function failed(what, error) {
  return h("p", {class: "error"}, `${what} failed: ${error?.message ?? error}`);
}

export function table(headers, rows, attrs) {
  return h("table", attrs,
    h("thead", null, h("tr", null, headers.map((head) => h("th", null, head)))),
    h("tbody", null, rows));
}

export function dl(pairs) {
  return h("dl", {class: "facts"},
    pairs.filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([term, value]) => [h("dt", null, term), h("dd", null, value)]));
}

const pad = (n) => String(n).padStart(2, "0");

export const fmt = {
  time(ms) {
    if (ms === null || ms === undefined) return "—";
    const d = new Date(ms);
    const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return clock;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock}`;
  },
  clock(ms) {
    if (ms === null || ms === undefined) return "—";
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  },
  iso(ms) {
    return ms === null || ms === undefined ? "" : new Date(ms).toISOString();
  },
  num(value, digits = 0) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return Number(value).toLocaleString("en-GB", {
      minimumFractionDigits: digits, maximumFractionDigits: digits,
    });
  },
  score(value) {
    if (value === null || value === undefined) return "—";
    const abs = Math.abs(value);
    return abs !== 0 && (abs < 0.001 || abs >= 10000) ? value.toExponential(2) : value.toFixed(3);
  },
  pct(value, digits = 1) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return `${(value * 100).toFixed(digits)}%`;
  },
  duration(ms) {
    if (ms === null || ms === undefined) return "—";
    const abs = Math.abs(ms);
    if (abs < 1000) return `${Math.round(ms)} ms`;
    if (abs < 60_000) return `${(ms / 1000).toFixed(1)} s`;
    if (abs < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
    if (abs < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
    return `${(ms / 86_400_000).toFixed(1)} d`;
  },
};
