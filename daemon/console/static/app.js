// blipd console page: plain JavaScript, no build step. Data from the JSON API, live from /api/live.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { streams: [], nextBefore: null, refreshTimer: null, timelineTimer: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
const when = (t) => new Date(t * 1000).toLocaleString([], { hour12: false });

function ago(t, now) {
  const s = Math.max(0, Math.round(now - t));
  return s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}

function eventText(ev) {
  const e = ev.event || {};
  switch (ev.type) {
    case "caption": return e.text;
    case "answer": return e.text + " → " + e.answer;
    case "match": return e.text + " (" + e.phase + ", " + Number(e.score || 0).toFixed(2) + ")";
    case "stream": return e.state + (e.reason ? ": " + e.reason : "");
    case "gap": return e.kind === "restart" ? "daemon restarted" + (e.missed ? ", missed " + e.missed + " events" : "")
                                             : "missed " + e.missed + " events";
    default: return ev.type;
  }
}

// ---- live grid ----------------------------------------------------------------------------

function matchSeconds(m, now) {
  const started = Date.parse(m.started) / 1000;  // the latest event may be the start: count from it to now
  return Math.round(isNaN(started) ? (m.duration_s || 0) : Math.max(m.duration_s || 0, now - started));
}

function card(s, now) {
  const img = s.snapshot ? el("img", { src: s.snapshot.url, alt: "latest snapshot of " + s.stream, loading: "lazy" })
                         : el("div", { class: "noimg", text: "no snapshot" });
  const stateName = s.state ? s.state.state : (now - s.last_t < 120 ? "online" : "quiet");
  const matches = el("ul", { class: "matches" });
  for (const m of s.matches.filter((m) => m.phase !== "end")) {
    matches.append(el("li", { class: "match-active", "data-prompt": m.prompt,
      text: "● " + m.text + " " + Number(m.score || 0).toFixed(2) + " · " + matchSeconds(m, now) + " s" }));
  }
  const answers = el("ul", { class: "answers" });
  for (const a of s.answers) answers.append(el("li", { text: a.text + " → " + a.answer }));
  const facts = [];
  if (s.stats) {
    const dropped = Object.values(s.stats.dropped || {}).reduce((x, y) => x + y, 0);
    facts.push(Number(s.stats.fps_in || 0).toFixed(1) + " fps in", Number(s.stats.fps_out || 0).toFixed(1) + " inferred/s",
               dropped + " dropped");
  }
  facts.push("last event " + ago(s.last_t, now));
  const notices = [];
  if (s.missed) notices.push("missed " + s.missed + " events");
  if (s.restarts) notices.push("daemon restarted " + s.restarts + "×");
  if (s.state && s.state.reason && stateName !== "online") notices.push(s.state.reason);
  return el("article", { class: "card", "data-stream": s.stream },
    img,
    el("div", { class: "body" },
      el("div", { class: "head" }, el("span", { class: "name", text: s.stream }),
        el("span", { class: "state " + stateName, text: stateName })),
      el("p", { class: "caption", text: s.caption ? s.caption.text : "…" }),
      matches, answers,
      el("div", { class: "facts", text: facts.join(" · ") }),
      notices.length ? el("div", { class: "notice", text: notices.join(" · ") }) : null));
}

async function refreshGrid() {
  const data = await api("/api/streams");
  state.streams = data.streams;
  const grid = $("#grid");
  if (data.streams.length) grid.replaceChildren(...data.streams.map((s) => card(s, data.now)));
  for (const select of [$("#tl-stream"), $("#s-stream")]) {
    const keep = select.value;
    const names = data.streams.map((s) => s.stream);
    const have = Array.from(select.options).map((o) => o.value).filter((v) => v);
    if (names.join() !== have.join()) {
      const first = select.id === "s-stream" ? [el("option", { value: "", text: "all streams" })] : [];
      select.replaceChildren(...first, ...names.map((n) => el("option", { value: n, text: n })));
      if (keep) select.value = keep;
    }
  }
}

// ---- timeline -----------------------------------------------------------------------------

function placed(cls, start, end, since, until, title, onclick) {
  const span = until - since;
  const left = Math.max(0, (start - since) / span) * 100;
  const right = Math.min(1, ((end === null ? until : end) - since) / span) * 100;
  const node = el("div", { class: cls, title: title, onclick: onclick });
  node.style.left = left + "%";
  if (cls.startsWith("bar")) node.style.width = Math.max(0.3, right - left) + "%";
  return node;
}

function row(label, ...items) {
  return el("div", { class: "row" }, el("span", { class: "label", text: label, title: label }),
            el("div", { class: "track" }, ...items));
}

async function refreshTimeline() {
  const stream = $("#tl-stream").value;
  const box = $("#timeline");
  if (!stream) { box.replaceChildren(el("p", { class: "muted", text: "No stream yet." })); return; }
  const tl = await api("/api/timeline?stream=" + encodeURIComponent(stream) + "&period=" + $("#tl-period").value);
  const { since, until } = tl;
  const rows = [];
  rows.push(row("captions", ...tl.captions.map((c) => placed("tick caption", c.t, c.t, since, until,
    clock(c.t) + " " + c.text, () => openEvent(c.id)))));
  const prompts = {};
  for (const m of tl.matches) (prompts[m.text || m.prompt] = prompts[m.text || m.prompt] || []).push(m);
  for (const [text, list] of Object.entries(prompts)) {
    rows.push(row(text, ...list.map((m) => placed("bar match", m.start, m.end, since, until,
      text + ": " + clock(m.start) + " → " + (m.end ? clock(m.end) : "now") + ", peak " + Number(m.peak || 0).toFixed(2),
      () => openEvent(m.id)))));
  }
  rows.push(row("answers", ...tl.answers.map((a) => placed("tick answer", a.t, a.t, since, until,
    clock(a.t) + " " + a.question + " → " + a.answer, () => openEvent(a.id)))));
  rows.push(row("outages & gaps",
    ...tl.outages.map((o) => placed("bar outage", o.start, o.end, since, until, o.state + (o.reason ? ": " + o.reason : ""))),
    ...tl.gaps.map((g) => placed("tick gap", g.t, g.t, since, until,
      clock(g.t) + (g.kind === "restart" ? " daemon restarted" : "") + (g.missed ? " missed " + g.missed + " events" : "")))));
  const axis = el("div", { class: "axis" }, el("span", { text: clock(since) }), el("span", { text: clock(until) }));
  const changes = el("ul", { class: "changes" });
  const recent = tl.captions.slice(-20).reverse();
  for (const c of recent) changes.append(el("li", { class: "change", text: clock(c.t) + "  " + c.text }));
  for (const g of tl.gaps) changes.prepend(el("li", { class: "notice",
    text: clock(g.t) + "  " + (g.kind === "restart" ? "daemon restarted" : "missed " + g.missed + " events") +
          (g.kind === "restart" && g.missed ? ", missed " + g.missed + " events" : "") }));
  box.replaceChildren(...rows, axis, changes);
}

// ---- search -------------------------------------------------------------------------------

function resultItem(ev) {
  const img = ev.snapshot ? el("img", { src: ev.snapshot, alt: "", loading: "lazy" }) : el("div", { class: "noimg" });
  return el("article", { class: "result", "data-id": ev.id, onclick: () => openEvent(ev.id) }, img,
    el("div", {}, el("div", { class: "text", text: eventText(ev) }),
      el("div", { class: "meta", text: when(ev.t) + " · " + ev.stream + " · " + ev.type })));
}

async function search(more) {
  const form = new FormData($("#search-form"));
  const params = new URLSearchParams();
  for (const [key, value] of form) if (value) params.set(key, value);
  if (!params.get("q")) return;
  if (more && state.nextBefore) params.set("before_id", state.nextBefore);
  params.set("limit", "20");
  const data = await api("/api/search?" + params);
  const box = $("#results");
  const items = data.events.map(resultItem);
  if (more) box.append(...items);
  else box.replaceChildren(...(items.length ? items : [el("p", { class: "muted", text: "Nothing found." })]));
  state.nextBefore = data.next_before;
  $("#more").hidden = !data.next_before;
}

async function openEvent(id) {
  const ev = await api("/api/events/" + id);
  const body = $("#detail-body");
  body.replaceChildren(
    el("h3", { text: ev.stream + " · " + ev.type + " · " + when(ev.t) }),
    el("p", { text: eventText(ev) }),
    ev.snapshot ? el("img", { src: ev.snapshot, alt: "snapshot" }) : el("p", { class: "muted", text: "no snapshot" }),
    el("pre", { text: JSON.stringify(ev.event, null, 2) }));
  const dialog = $("#detail");
  if (dialog.showModal) dialog.showModal(); else dialog.setAttribute("open", "");
}

// ---- live updates -------------------------------------------------------------------------

function schedule(name, fn, delay) {
  if (state[name]) return;
  state[name] = setTimeout(() => { state[name] = null; fn().catch(showError); }, delay);
}

function connectLive() {
  const source = new EventSource("/api/live");
  source.onopen = () => $("#live").className = "live on";
  source.onerror = () => $("#live").className = "live off";
  source.addEventListener("resync", () => { source.close(); refreshAll(); setTimeout(connectLive, 1000); });
  source.onmessage = (message) => {
    const rows = JSON.parse(message.data);
    schedule("refreshTimer", refreshGrid, 500);
    if (rows.some((r) => r.stream === $("#tl-stream").value && r.type !== "stats")) {
      schedule("timelineTimer", refreshTimeline, 2000);
    }
  };
}

async function refreshStatus() {
  const s = await api("/api/status");
  $("#status").textContent = "recorded since start: " + s.recorded + (s.missed ? " · " + s.missed + " missed" : "") +
    (s.snapshots_skipped_disk ? " · " + s.snapshots_skipped_disk + " snapshots skipped (disk low)" : "");
}

function showError(error) { $("#status").textContent = String(error.message || error); }

async function refreshAll() {
  await refreshGrid();
  await Promise.all([refreshTimeline(), refreshStatus()]);
}

function start() {
  $("#timeline-form").addEventListener("change", () => refreshTimeline().catch(showError));
  $("#search-form").addEventListener("submit", (e) => { e.preventDefault(); search(false).catch(showError); });
  $("#more").addEventListener("click", () => search(true).catch(showError));
  const params = new URLSearchParams(location.search);
  if (params.get("q")) $("#q").value = params.get("q");
  if (params.get("stream")) state.wanted = params.get("stream");
  if (params.get("period")) $("#tl-period").value = params.get("period");
  refreshAll().then(() => {
    if (state.wanted) { $("#tl-stream").value = state.wanted; return refreshTimeline(); }
  }).then(() => (params.get("q") ? search(false) : null)).catch(showError);
  connectLive();
  setInterval(() => refreshStatus().catch(showError), 10000);
}

start();
