// llm-proxy status page: polls GET /admin/status (admin key as a header) and GET /metrics every
// second; rates, error rates and TTFT quantiles come from the differences between scrapes.
// Self-contained: no external request, no inline script (the page's CSP forbids both).
"use strict";

const KEY = "lp-admin-key";
const POLL_MS = 1000;
const HISTORY = 300;          // samples kept per backend (5 minutes at 1 s)
const TTFT_WINDOW_MS = 60000; // quantiles over the last minute
const NOT_ERRORS = new Set(["ok", "cancelled", "client_gone", "refused"]);

const $ = (id) => document.getElementById(id);
let timer = null;
let last = null;              // the latest {st, rates}, re-rendered when the filter changes
let prev = null;              // previous /metrics snapshot
const snaps = [];             // [{t, ttft: Map(backend -> Map(le -> count))}]
const hist = new Map();       // backend -> [{rate, err, p50, p95}]

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

function svgSpark(values, cls) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark" + (cls ? " " + cls : ""));
  svg.setAttribute("viewBox", "0 0 80 18");
  svg.setAttribute("aria-hidden", "true");
  const vals = values.filter((v) => Number.isFinite(v));
  if (vals.length > 1) {
    const max = Math.max(...vals, 1e-9);
    const step = 80 / (values.length - 1);
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(17 - (Number.isFinite(v) ? v : 0) / max * 16).toFixed(1)}`);
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("points", pts.join(" "));
    svg.append(pl);
  }
  return svg;
}

// ---- /metrics (Prometheus text) -------------------------------------------------------------

function parseMetrics(text) {
  const out = { attempts: new Map(), errors: new Map(), ttft: new Map() };
  const lab = /(\w+)="((?:[^"\\]|\\.)*)"/g;
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const sp = line.lastIndexOf(" ");
    const head = line.slice(0, sp), value = Number(line.slice(sp + 1));
    const brace = head.indexOf("{");
    const name = brace < 0 ? head : head.slice(0, brace);
    if (name !== "llm_proxy_upstream_attempts_total" && name !== "llm_proxy_upstream_ttft_seconds_bucket") continue;
    const labels = {};
    for (const m of head.slice(brace).matchAll(lab)) labels[m[1]] = m[2].replace(/\\(.)/g, "$1");
    const b = labels.backend || "";
    if (name === "llm_proxy_upstream_attempts_total") {
      out.attempts.set(b, (out.attempts.get(b) || 0) + value);
      if (!NOT_ERRORS.has(labels.class)) out.errors.set(b, (out.errors.get(b) || 0) + value);
    } else {
      if (!out.ttft.has(b)) out.ttft.set(b, new Map());
      out.ttft.get(b).set(labels.le, value);
    }
  }
  return out;
}

// Quantile q of the bucket counts' increase between two cumulative histograms.
function quantile(now, then, q) {
  if (!now) return NaN;
  const les = [...now.keys()].sort((a, b) => (a === "+Inf") - (b === "+Inf") || Number(a) - Number(b));
  const inc = les.map((le) => now.get(le) - ((then && then.get(le)) || 0));
  const total = inc[inc.length - 1];
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let lo = 0, below = 0;
  for (let i = 0; i < les.length; i++) {
    if (inc[i] >= rank) {
      if (les[i] === "+Inf") return lo;
      const hi = Number(les[i]);
      const inb = inc[i] - below;
      return inb > 0 ? lo + (hi - lo) * (rank - below) / inb : hi;
    }
    below = inc[i];
    lo = les[i] === "+Inf" ? lo : Number(les[i]);
  }
  return lo;
}

function sample(m, t) {
  snaps.push({ t, ttft: m.ttft });
  while (snaps.length > 2 && t - snaps[1].t >= TTFT_WINDOW_MS) snaps.shift();
  const old = snaps[0];
  const rows = new Map();
  for (const b of new Set([...m.attempts.keys(), ...m.ttft.keys()])) {
    let rate = NaN, err = NaN;
    if (prev) {
      const dt = (t - prev.t) / 1000;
      rate = Math.max(0, (m.attempts.get(b) || 0) - (prev.m.attempts.get(b) || 0)) / dt;
      err = Math.max(0, (m.errors.get(b) || 0) - (prev.m.errors.get(b) || 0)) / dt;
    }
    const then = old && old.t < t ? old.ttft.get(b) : null;
    const s = { rate, err, p50: quantile(m.ttft.get(b), then, 0.5), p95: quantile(m.ttft.get(b), then, 0.95) };
    if (!hist.has(b)) hist.set(b, []);
    const h = hist.get(b);
    h.push(s);
    if (h.length > HISTORY) h.shift();
    rows.set(b, s);
  }
  prev = { t, m };
  return rows;
}

// ---- rendering --------------------------------------------------------------------------------

const fmtRate = (v) => (Number.isFinite(v) ? (v >= 10 ? v.toFixed(0) : v.toFixed(2)) : "–");
const fmtMs = (s) => (Number.isFinite(s) ? (s * 1000 >= 100 ? (s * 1000).toFixed(0) : (s * 1000).toFixed(1)) + " ms" : "–");
const fmtLeft = (ms) => (ms >= 60000 ? `${Math.floor(ms / 60000)}m${Math.round(ms % 60000 / 1000)}s` : `${Math.ceil(ms / 1000)}s`);

function backendState(b) {
  if (b.enabled === false) return "disabled";
  if (b.drained) return "drained";
  const br = b.breaker && b.breaker.state;
  if (br === "open" || br === "half_open" || br === "half-open") return br.replace("-", "_");
  const models = b.models || [];
  if (models.length && models.every((m) => m.cooling)) return "cooling";
  return "closed";
}

function matches(text) {
  const f = $("filter").value.trim().toLowerCase();
  return !f || text.toLowerCase().includes(f);
}

function renderBackends(st, rates) {
  const tb = el("tbody");
  for (const b of st.backends || []) {
    if (!matches(b.name)) continue;
    const state = backendState(b);
    const r = rates.get(b.name) || {};
    const h = hist.get(b.name) || [];
    const inflight = (b.concurrency && b.concurrency.in_flight) ?? b.in_flight ?? "–";
    const cooling = (b.models || []).filter((m) => m.cooling)
      .map((m) => `${m.model} ${fmtLeft(m.remaining_ms || 0)}`).join(", ");
    let stateText = state.replace("_", "-");
    if (state === "open" && b.breaker && b.breaker.open_until_ms)
      stateText += " " + fmtLeft(Math.max(0, b.breaker.open_until_ms - Date.now()));
    const le = b.last_error;
    tb.append(el("tr", { "data-backend": b.name, "data-state": state },
      el("td", {}, b.name),
      el("td", {}, el("span", { class: "badge s-" + state }, stateText)),
      el("td", { class: "num" }, inflight),
      el("td", { class: "num" }, fmtRate(r.rate), svgSpark(h.map((x) => x.rate))),
      el("td", { class: "num" }, fmtRate(r.err), svgSpark(h.map((x) => x.err), "err")),
      el("td", { class: "num" }, `${fmtMs(r.p50)} / ${fmtMs(r.p95)}`, svgSpark(h.map((x) => x.p95))),
      el("td", { class: "wrap" }, cooling || el("span", { class: "muted" }, "–")),
      el("td", { class: "wrap" }, le ? `${le.class}: ${le.reason || ""} (${new Date(le.at_ms).toLocaleTimeString()})`
        : el("span", { class: "muted" }, "–"))));
  }
  $("backends").querySelector("tbody").replaceWith(tb);
}

function renderAliases(st) {
  const tb = el("tbody");
  for (const a of st.aliases || []) {
    if (!matches(a.name + " " + (a.routes || []).map((r) => r.backend).join(" "))) continue;
    const pref = a.preferred ? `${a.preferred.backend}/${a.preferred.model}` : "none usable";
    const routes = el("td", { class: "wrap" });
    for (const r of a.routes || []) {
      const s = r.enabled === false ? "disabled" : r.state || "usable";
      routes.append(el("span", { class: "route" }, `p${r.priority} ${r.backend}/${r.model} `,
        el("span", { class: "badge s-" + s }, s + (r.remaining_ms ? " " + fmtLeft(r.remaining_ms) : ""))));
    }
    tb.append(el("tr", { "data-alias": a.name },
      el("td", {}, a.name + (a.enabled === false ? " (disabled)" : "")),
      el("td", { class: a.preferred ? "" : "error" }, pref), routes));
  }
  $("aliases").querySelector("tbody").replaceWith(tb);
}

function renderFailovers(st) {
  const tb = el("tbody");
  for (const f of (st.failovers || []).slice(0, 20)) {
    tb.append(el("tr", {},
      el("td", { class: "num" }, new Date(f.at_ms).toLocaleTimeString()),
      el("td", {}, f.alias), el("td", {}, `${f.backend}/${f.model}`),
      el("td", {}, f.class), el("td", { class: "wrap" }, f.cause)));
  }
  $("failovers").querySelector("tbody").replaceWith(tb);
}

function render(st, rates) {
  $("version").textContent = st.version ? "v" + st.version : "";
  const n = (st.backends || []).length;
  const down = (st.backends || []).filter((b) => backendState(b) !== "closed").length;
  $("summary").textContent = `${n} backends, ${down} not closed · ${st.active_requests ?? 0} requests in flight · ` +
    `${st.failovers_total ?? 0} failovers · up ${fmtLeft((st.uptime_s || 0) * 1000)}` + (st.draining ? " · draining" : "");
  renderBackends(st, rates);
  renderAliases(st);
  renderFailovers(st);
}

// ---- polling and the key ------------------------------------------------------------------------

function showLogin(msg) {
  clearTimeout(timer);
  timer = null;
  $("live").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("key").focus();
}

async function poll() {
  const key = sessionStorage.getItem(KEY);
  if (!key) return showLogin();
  try {
    const [sr, mr] = await Promise.all([
      fetch("/admin/status", { headers: { Authorization: "Bearer " + key }, cache: "no-store" }),
      fetch("/metrics", { cache: "no-store" }),
    ]);
    if (sr.status === 401 || sr.status === 403) {
      sessionStorage.removeItem(KEY);
      return showLogin("The admin key was refused.");
    }
    if (!sr.ok) throw new Error("/admin/status answered " + sr.status);
    const st = await sr.json();
    const rates = mr.ok ? sample(parseMetrics(await mr.text()), Date.now()) : new Map();
    $("login").hidden = true;
    $("live").hidden = false;
    $("logout").hidden = false;
    last = { st, rates };
    render(st, rates);
    $("conn").textContent = "updated " + new Date().toLocaleTimeString();
    $("conn").className = "conn";
  } catch (e) {
    $("conn").textContent = "not reachable: " + e.message;
    $("conn").className = "conn bad";
  }
  timer = setTimeout(poll, POLL_MS);
}

function applyTheme(t) {
  document.documentElement.classList.toggle("dark", t === "dark");
  document.documentElement.classList.toggle("light", t === "light");
}

document.addEventListener("DOMContentLoaded", () => {
  applyTheme(localStorage.getItem("lp-theme"));
  $("theme").addEventListener("click", () => {
    const dark = document.documentElement.classList.contains("dark") ||
      (!document.documentElement.classList.contains("light") && matchMedia("(prefers-color-scheme: dark)").matches);
    const t = dark ? "light" : "dark";
    localStorage.setItem("lp-theme", t);
    applyTheme(t);
  });
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("key").value);
    $("key").value = "";
    clearTimeout(timer);
    poll();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showLogin();
  });
  $("filter").addEventListener("input", () => { if (last) render(last.st, last.rates); });
  poll();
});
