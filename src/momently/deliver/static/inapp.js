/*
 * momently in-app snippet: subscribes to one device's message stream (Server-Sent
 * Events) and shows each message once.
 *
 *   <script src="https://engine.example/api/inapp/inapp.js"
 *           data-customer="c1" data-device="d1" data-token="..."></script>
 *
 * or, by hand: momentlyInApp.connect({endpoint, customer, device, token, onMessage}).
 * Everything from the message is shown as text, and only http(s) links are followed.
 */
(function (global) {
  "use strict";
  var STORE = "momently:inapp:shown";
  var seen = new Set();

  function load() {
    try {
      JSON.parse(global.localStorage.getItem(STORE) || "[]").forEach(function (k) { seen.add(k); });
    } catch (e) { /* storage may be off: remember for this page only */ }
  }

  function remember(key) {
    seen.add(key);
    try {
      global.localStorage.setItem(STORE, JSON.stringify(Array.from(seen).slice(-200)));
    } catch (e) { /* ignore */ }
  }

  function safeUrl(url) {
    if (!url) return null;
    try {
      var parsed = new URL(url, global.location.href);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function root() {
    var box = document.getElementById("momently-inapp");
    if (!box) {
      box = document.createElement("div");
      box.id = "momently-inapp";
      box.setAttribute("aria-live", "polite");
      box.style.cssText = "position:fixed;right:16px;bottom:16px;z-index:2147483647;" +
        "max-width:360px;font:14px/1.4 sans-serif";
      document.body.appendChild(box);
    }
    return box;
  }

  function show(message, options) {
    options = options || {};
    if (!message || !message.key || seen.has(message.key)) return false;
    remember(message.key);
    var card = document.createElement("div");
    card.className = "momently-inapp";
    card.setAttribute("role", "status");
    card.dataset.key = message.key;
    card.style.cssText = "background:#fff;color:#111;border-radius:8px;padding:12px 36px 12px 12px;" +
      "margin-top:8px;box-shadow:0 2px 12px rgba(0,0,0,.25);position:relative";
    if (message.title) {
      var title = document.createElement("strong");
      title.className = "momently-inapp-title";
      title.textContent = message.title;
      card.appendChild(title);
    }
    var body = document.createElement("p");
    body.className = "momently-inapp-body";
    body.style.margin = "4px 0";
    body.textContent = message.body || "";
    card.appendChild(body);
    var href = safeUrl(message.url);
    if (href) {
      var link = document.createElement("a");
      link.className = "momently-inapp-link";
      link.href = href;
      link.rel = "noopener";
      link.textContent = options.linkText || "Open";
      card.appendChild(link);
    }
    var close = document.createElement("button");
    close.type = "button";
    close.className = "momently-inapp-close";
    close.setAttribute("aria-label", "Close");
    close.textContent = "\u00d7";
    close.style.cssText = "position:absolute;top:6px;right:8px;border:0;background:none;" +
      "font-size:18px;cursor:pointer";
    close.addEventListener("click", function () { card.remove(); });
    card.appendChild(close);
    root().appendChild(card);
    if (typeof options.onMessage === "function") options.onMessage(message);
    return true;
  }

  function connect(options) {
    var params = new URLSearchParams({ customer: options.customer, device: options.device });
    if (options.token) params.set("token", options.token);
    var source = new global.EventSource(options.endpoint + "?" + params.toString());
    source.addEventListener("message", function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      show(message, options);
    });
    return source;
  }

  load();
  global.momentlyInApp = { connect: connect, show: show };

  var script = document.currentScript;
  if (script && script.dataset.customer && script.dataset.device) {
    var options = {
      endpoint: script.dataset.endpoint || new URL("stream", script.src).href,
      customer: script.dataset.customer,
      device: script.dataset.device,
      token: script.dataset.token
    };
    var start = function () { global.momentlyInApp.source = connect(options); };
    if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
  }
})(window);
