"use strict";
// The operator console (telephony/console). Plain JS and SVG, no library: everything is served offline.
// Every text from a call goes into the page through textContent, never as HTML.
// tests/test_console_browser.py reads the element ids and data-* attributes used here: keep them stable.

const $ = id => document.getElementById(id);
const state = window.consoleState = { me: null, live: new Map(), feedEvents: 0, partials: 0, view: null, ready: false,
  listen: { frames: 0, caller: 0, bot: 0, closed: null } };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) if (child !== null && child !== undefined)
    node.append(child instanceof Node ? child : String(child));
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) { location.href = "/console/login"; throw new Error("logged out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function post(path) {
  return api(path, { method: "POST", headers: { "X-CSRF-Token": state.me.csrf } });
}

const fmt = {
  when: iso => new Date(iso).toLocaleString(),
  secs: s => s === null || s === undefined ? "live" : s >= 60 ? `${Math.floor(s / 60)}m ${String(Math.round(s % 60)).padStart(2, "0")}s` : `${Math.round(s)}s`,
  pct: x => x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)} %`,
  ms: x => x === null || x === undefined ? "–" : `${Math.round(x)} ms`,
  json: v => v && Object.keys(v).length ? JSON.stringify(v) : "–",
};

const words = code => String(code).replaceAll("_", " ");

function outcome(call) {
  if (call.status === "active") return "active";
  if (call.handoff_reason) return `transferred: ${words(call.handoff_reason)}`;  // the hand-off's reason code
  if (call.transfer_target || call.transfer_reason) return "transferred";
  return /^(internal error|limit exceeded|line dead|call failed|gateway instance lost)/.test(call.end_reason || "") ? "error" : "contained";
}

// --- live calls -----------------------------------------------------------------------------------------

// Listen-in: both sides of a call as they pass, caller on the left, bot on the right.
let listening = null;
function stopListening() {
  if (!listening) return;
  listening.ws.close(); listening.ctx.close(); listening.button.textContent = "Listen"; listening = null;
}
function listenTo(call, button) {
  if (listening) { const same = listening.id === call.id; stopListening(); if (same) return; }
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/console/api/live/${encodeURIComponent(call.id)}/listen`);
  const ctx = new AudioContext(), at = [0, 0], pans = [-1, 1].map(p => { const n = new StereoPannerNode(ctx, { pan: p }); n.connect(ctx.destination); return n; });
  let rate = 8000;
  ws.binaryType = "arraybuffer";
  ws.onmessage = m => {
    if (typeof m.data === "string") { rate = JSON.parse(m.data).rate; return; }
    const side = new Uint8Array(m.data, 0, 1)[0], pcm = new Int16Array(m.data.slice(1)), f = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 32768;
    const buffer = ctx.createBuffer(1, f.length, rate); buffer.copyToChannel(f, 0);
    const source = ctx.createBufferSource(); source.buffer = buffer; source.connect(pans[side]);
    at[side] = Math.max(at[side], ctx.currentTime + 0.15); source.start(at[side]); at[side] += buffer.duration;
    state.listen.frames += 1; state.listen[side ? "bot" : "caller"] += 1;
  };
  ws.onclose = e => { state.listen.closed = e.code; if (listening && listening.ws === ws) stopListening(); };
  listening = { id: call.id, ws, ctx, button };
  button.textContent = "Stop listening";
}

function liveCard(call) {
  const transfer = el("button", { class: "danger transfer", type: "button", textContent: "Transfer to a person" });
  transfer.hidden = state.me.role !== "supervisor";
  transfer.onclick = async () => {
    transfer.disabled = true;
    try { await post(`/console/api/live/${encodeURIComponent(call.id)}/transfer`); transfer.textContent = "Transferring…"; }
    catch (e) { transfer.textContent = "Failed: " + e.message; transfer.disabled = false; }
  };
  const listen = el("button", { class: "listen", type: "button", textContent: "Listen" });
  listen.hidden = state.me.role !== "supervisor";
  listen.onclick = () => listenTo(call, listen);
  const card = el("div", { class: "call", "data-id": call.id },
    el("div", { class: "head" }, el("b", { class: "protocol" }, call.protocol), el("span", { class: "caller" }, call.caller || "unknown caller"),
      el("span", { class: "duration meta" }, "0s"), el("b", { class: "handoff", hidden: true })),
    el("dl", { class: "facts" },
      el("dt", {}, "flow"), el("dd", { class: "flow" }), el("dt", {}, "intent"), el("dd", { class: "intent" }),
      el("dt", {}, "sentiment"), el("dd", { class: "sentiment" }), el("dt", {}, "slots"), el("dd", { class: "slots" })),
    el("div", { class: "transcript" }), el("div", { class: "actions" }, listen, transfer));
  return card;
}

function renderLive(call) {
  let card = document.querySelector(`#live-calls .call[data-id="${CSS.escape(call.id)}"]`);
  if (!card) { card = liveCard(call); $("live-calls").prepend(card); }
  card.querySelector(".flow").textContent = call.flow || "–";
  card.querySelector(".intent").textContent = call.intent || "–";
  card.querySelector(".sentiment").textContent = call.sentiment || "–";
  card.querySelector(".slots").textContent = fmt.json(call.slots);
  const handoff = card.querySelector(".handoff");
  handoff.hidden = !call.transfer;
  if (call.transfer) handoff.textContent = `transferred: ${words(call.transfer.reason)} → ${call.transfer.target || "a person"}`;
  const box = card.querySelector(".transcript");
  box.replaceChildren(...call.lines.map(l => el("p", { class: `line ${l.who}` }, l.text)));
  if (call.partial) box.append(el("p", { class: "line caller partial" }, call.partial));
  box.scrollTop = box.scrollHeight;
  $("live-empty").hidden = state.live.size > 0;
  $("live-count").textContent = state.live.size;
}

function onFeed(event) {
  state.feedEvents += 1;
  const live = state.live;
  if (event.type === "snapshot") {
    live.clear(); $("live-calls").replaceChildren();
    for (const call of event.calls) live.set(call.id, call);
  } else if (event.type === "call") live.set(event.call.id, event.call);
  else if (event.type === "ended") {
    live.delete(event.id);
    if (listening && listening.id === event.id) stopListening();
    document.querySelector(`#live-calls .call[data-id="${CSS.escape(event.id)}"]`)?.remove();
  } else {
    const call = live.get(event.id);
    if (!call) return;
    if (event.type === "partial") { call.partial = event.text; state.partials += 1; }
    else if (event.type === "line") { call.lines.push({ who: event.who, text: event.text }); if (event.who === "caller") call.partial = ""; }
    else if (event.type === "transfer") call.transfer = { reason: event.reason, reason_text: event.reason_text, target: event.target };
    else if (event.type === "state") Object.assign(call, { flow: event.flow, intent: event.intent, sentiment: event.sentiment, slots: event.slots });
  }
  for (const call of live.values()) if (event.type === "snapshot" || call.id === event.id || call.id === event.call?.id) renderLive(call);
  $("live-empty").hidden = live.size > 0;
  $("live-count").textContent = live.size;
}

function startFeed() {
  const source = new EventSource("/console/api/live");
  source.onopen = () => { $("feed-status").textContent = "connected"; };
  source.onerror = () => { $("feed-status").textContent = "reconnecting…"; };
  source.onmessage = m => onFeed(JSON.parse(m.data));
  setInterval(() => {
    for (const call of state.live.values()) {
      const card = document.querySelector(`#live-calls .call[data-id="${CSS.escape(call.id)}"] .duration`);
      if (card) card.textContent = fmt.secs((Date.now() - call.started_ms) / 1000);
    }
  }, 1000);
}

// --- history --------------------------------------------------------------------------------------------

async function loadFacets() {
  const facets = await api("/console/api/facets");
  const form = $("filters");
  for (const [name, values] of [["outcome", facets.outcomes], ["intent", facets.intents], ["sentiment", facets.sentiments], ["protocol", facets.protocols]]) {
    const select = form.elements[name], keep = select.value;
    select.replaceChildren(el("option", { value: "" }, "any"), ...values.map(v => el("option", { value: v }, v)));
    select.value = keep;
  }
}

const PAGE = 50;
async function searchCalls(more = false) {
  const form = new FormData($("filters")), query = new URLSearchParams();
  for (const [k, v] of form.entries()) {
    if (!v) continue;
    query.set(k, (k === "since" || k === "until") ? new Date(v).toISOString() : v);
  }
  const shown = more ? $("history-rows").children.length : 0;
  query.set("limit", PAGE); query.set("offset", shown);
  const calls = await api("/console/api/calls?" + query);
  $("history-more").hidden = calls.length < PAGE;
  $("history-rows")[more ? "append" : "replaceChildren"](...calls.map(c => {
    const row = el("tr", { "data-id": c.id },
      el("td", {}, fmt.when(c.started_at)), el("td", {}, c.protocol), el("td", {}, c.caller || "–"),
      el("td", {}, fmt.secs(c.duration_s)), el("td", {}, c.turns), el("td", { class: "outcome" }, outcome(c)),
      el("td", {}, c.end_reason || ""));
    row.onclick = () => { location.hash = `#/call/${encodeURIComponent(c.id)}`; };
    return row;
  }));
  $("history-count").textContent = `${shown + calls.length} call(s)`;
  $("history-rows").dataset.loaded = String(Date.now());
}

// --- one call -------------------------------------------------------------------------------------------

const MILESTONES = ["speech_end", "turn_decision", "final_transcript", "nlu_done", "action_done", "first_tts_audio", "first_audio_sent"];
const SEGMENTS = { turn_decision: "endpoint", final_transcript: "asr", nlu_done: "nlu", action_done: "action", first_tts_audio: "tts", first_audio_sent: "send" };
const COLOURS = { speech: "#94a3b8", endpoint: "#f59e0b", asr: "#3b82f6", nlu: "#8b5cf6", action: "#ef4444", tts: "#10b981", send: "#0ea5e9" };
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function waterfall(at) {
  const points = MILESTONES.filter(k => typeof at[k] === "number").map(k => [k, at[k]]);
  if (points.length < 2) return null;
  const start = points[0][1], end = points[points.length - 1][1], span = Math.max(end - start, 1);
  const width = 320, row = 14, label = 62, chart = svg("svg", { class: "waterfall", width, height: row * (points.length - 1) + 14 });
  points.slice(1).forEach(([key, t], i) => {
    const from = points[i][1], name = SEGMENTS[key] || key, x = label + (from - start) / span * (width - label - 50);
    const w = Math.max((t - from) / span * (width - label - 50), 1), y = i * row;
    chart.append(svg("text", { x: 0, y: y + 10 }, name),
      svg("rect", { x, y: y + 2, width: w, height: row - 4, fill: COLOURS[name] || "#64748b", "data-segment": name }),
      svg("text", { x: x + w + 3, y: y + 10 }, `${Math.round(t - from)}`));
  });
  const spoke = typeof at.speech_start === "number" && typeof at.speech_end === "number" ? `, after ${Math.round(at.speech_end - at.speech_start)} ms of speech` : "";
  chart.append(svg("text", { x: 0, y: row * (points.length - 1) + 11 }, `${points[0][0].replaceAll("_", " ")} → first audio out: ${Math.round(span)} ms${spoke}`));
  return chart;
}

function turnCard(turn, start) {
  const extra = turn.extra || {}, chat = el("div", { class: "chat" });
  if (turn.transcript !== null) chat.append(el("p", { class: "line caller" }, turn.transcript));
  if (turn.reply) chat.append(el("p", { class: "line bot" }, turn.reply + (turn.barge_in ? "  [cut by the caller]" : "")));
  const nbest = (extra.nbest || []).join(" | ");
  const facts = [
    ["cause", extra.cause], ["intent", turn.intent ? `${turn.intent} ${turn.confidence !== null ? turn.confidence.toFixed(2) : ""}` : null],
    ["ASR conf.", typeof extra.asr_confidence === "number" ? extra.asr_confidence.toFixed(2) : null], ["n-best", nbest || null],
    ["slots", Object.keys(turn.slots || {}).length ? JSON.stringify(turn.slots) : null], ["flow", extra.flow],
    ["action", turn.action ? `${turn.action} → ${turn.action_result}` : null], ["sentiment", turn.sentiment],
    ["done", (turn.actions || []).filter(a => a.kind !== "speak").map(a => `${a.kind} ${a.target || ""} (${a.reason || ""})`).join(", ") || null],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  const details = el("div", { class: "details" }, el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-fact": k }, v)])));
  const chart = waterfall(extra.at_ms || {});
  if (chart) details.append(chart);
  const card = el("div", { class: "turn", "data-index": turn.index, "data-start": start ?? "" },
    el("div", {}, el("span", { class: "meta" }, `#${turn.index} at ${start ?? "?"} s`), chat), details);
  return card;
}

// A transferred call's warm hand-off: why, the summary the person was given, and the values on the line.
function showHandoff(h, wire) {
  const box = $("call-handoff");
  box.hidden = !h;
  if (!h) { box.replaceChildren(); return; }
  const facts = [["reason", `${h.reason_text} (${h.reason})`], ["detail", h.detail], ["to", h.target],
    ["task", h.intent ? `${words(h.intent)}${h.flow ? `, flow ${h.flow}` : ""}` : null], ["slots", fmt.json(h.slots)],
    ["mood", h.sentiment ? `${h.sentiment.trend} (${h.sentiment.turns.join(", ") || "–"})` : null], ["at", h.at && fmt.when(h.at)]]
    .filter(([, v]) => v);
  box.replaceChildren(el("h3", {}, "Handed to a person"),
    el("ul", { class: "handoff-summary" }, ...(h.summary || []).map(l => el("li", {}, l))),
    el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-fact": k }, v)])),
    el("details", {}, el("summary", {}, "what the person received on the line (SIP headers, variables, webhook)"),
      el("dl", { class: "wire" }, ...Object.entries(wire || {}).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]))));
}

async function showCall(id) {
  const data = await api(`/console/api/calls/${encodeURIComponent(id)}`), c = data.call;
  $("call-id").textContent = c.id;
  $("call-summary").textContent = `${c.protocol}, ${fmt.when(c.started_at)}, ${fmt.secs(c.duration_s)}, caller ${c.caller || "unknown"}, ${outcome(c)}: ${c.end_reason || "still active"}` +
    (data.transfers.length ? ` — transferred to ${data.transfers.map(t => `${t.target} (${t.reason})`).join(", ")}` : "");
  showHandoff(data.handoff, data.handoff_wire);
  const player = $("call-player"), turns = data.turns.map(t => turnCard(t, t.start_s));
  if (state.me.role === "supervisor") {
    data.turns.forEach((t, i) => { if (t.transcript) turns[i].querySelector(".chat").append(reviewForm(c.id, t, data.domain)); });
    await showLearning(data.domain);
  }
  player.replaceChildren();
  if (data.recording_url) {
    const audio = el("audio", { id: "call-audio", controls: true, preload: "auto", src: data.recording_url });
    audio.ontimeupdate = () => {
      let current = null;
      for (const card of turns) if (card.dataset.start !== "" && Number(card.dataset.start) <= audio.currentTime) current = card;
      turns.forEach(card => card.classList.toggle("playing", card === current));
    };
    turns.forEach(card => card.addEventListener("click", () => { if (card.dataset.start !== "") { audio.currentTime = Number(card.dataset.start); audio.play(); } }));
    player.append(audio, el("p", { class: "meta" }, "Stereo recording: caller left, bot right. Click a turn to play from it."));
  } else player.append(el("p", { class: "meta" }, "No recording kept (server.recordings_dir)."));
  $("call-turns").replaceChildren(...turns);
  $("call-turns").dataset.loaded = c.id;
}

// --- dashboard ------------------------------------------------------------------------------------------

function bars(rows, label, value, fmtValue = v => v, max = null) {
  if (!rows.length) return el("p", { class: "meta" }, "nothing in this window");
  const width = 420, row = 18, left = 150, top = max ?? Math.max(...rows.map(value), 1);
  const chart = svg("svg", { width, height: rows.length * row + 4 });
  rows.forEach((r, i) => {
    const w = value(r) / top * (width - left - 60);
    chart.append(svg("text", { x: 0, y: i * row + 13 }, String(label(r)).slice(0, 24)),
      svg("rect", { x: left, y: i * row + 3, width: Math.max(w, 1), height: row - 6, fill: "#3b82f6" }),
      svg("text", { x: left + w + 4, y: i * row + 13 }, fmtValue(value(r))));
  });
  return chart;
}

function timeChart(points, series, unit = "") {
  const width = 420, height = 140, left = 40, bottom = 18;
  const values = points.flatMap(p => series.map(s => p[s.key])).filter(v => typeof v === "number");
  const top = Math.max(...values, 1), chart = svg("svg", { width, height });
  const x = i => left + (points.length > 1 ? i / (points.length - 1) : 0.5) * (width - left - 8);
  const y = v => (height - bottom) - v / top * (height - bottom - 8);
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#cbd5e1" }),
    svg("text", { x: 0, y: 12 }, `${Math.round(top * 100) / 100}${unit}`), svg("text", { x: 0, y: height - bottom }, "0"));
  for (const s of series) {
    if (s.bars) {
      const w = Math.max((width - left) / Math.max(points.length, 1) - 2, 1);
      points.forEach((p, i) => { if (p[s.key]) chart.append(svg("rect", { x: x(i) - w / 2, y: y(p[s.key]), width: w, height: (height - bottom) - y(p[s.key]), fill: s.colour })); });
    } else {
      const d = points.map((p, i) => typeof p[s.key] === "number" ? `${x(i)},${y(p[s.key])}` : null).filter(Boolean);
      if (d.length) chart.append(svg("polyline", { points: d.join(" "), fill: "none", stroke: s.colour, "stroke-width": 2 }));
      points.forEach((p, i) => { if (typeof p[s.key] === "number") chart.append(svg("circle", { cx: x(i), cy: y(p[s.key]), r: 2.5, fill: s.colour })); });
    }
  }
  const first = points[0], last = points[points.length - 1];
  if (first) chart.append(svg("text", { x: left, y: height - 4 }, new Date(first.hour).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit" })));
  if (last) chart.append(svg("text", { x: width - 90, y: height - 4 }, new Date(last.hour).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit" })));
  return chart;
}

async function showDashboard() {
  const d = await api(`/console/api/stats?hours=${$("dash-hours").value}`);
  $("kpi-calls").textContent = d.calls;
  $("kpi-containment").textContent = fmt.pct(d.containment);
  $("kpi-p50").textContent = fmt.ms(d.voice_to_voice.p50);
  $("kpi-p95").textContent = fmt.ms(d.voice_to_voice.p95);
  $("kpi-live").textContent = d.live;
  $("chart-calls").replaceChildren(timeChart(d.calls_per_hour, [{ key: "calls", colour: "#3b82f6", bars: true }]));
  $("chart-v2v").replaceChildren(timeChart(d.voice_to_voice_per_hour, [{ key: "p50", colour: "#10b981" }, { key: "p95", colour: "#ef4444" }], " ms"));
  $("chart-asr").replaceChildren(timeChart(d.asr_confidence_per_hour, [{ key: "mean", colour: "#8b5cf6" }]));
  $("chart-transfers").replaceChildren(bars(d.transfers_by_reason, r => r.reason, r => r.calls));
  $("chart-tasks").replaceChildren(bars(d.task_success, r => `${r.intent} (${r.turns})`, r => r.success, fmt.pct, 1));
  const utterances = list => list.length ? list.map(u => el("li", {}, `${u.text} (${u.count})`)) : [el("li", { class: "meta" }, "none in this window")];
  $("list-oos").replaceChildren(...utterances(d.out_of_scope));
  $("list-unsure").replaceChildren(...utterances(d.low_confidence));
  $("view-dashboard").dataset.loaded = String(Date.now());
}

// --- routing --------------------------------------------------------------------------------------------

async function route() {
  const [, view, id] = (location.hash || "#/live").split("/");
  const name = { live: "live", calls: "calls", call: "call", dashboard: "dashboard" }[view] || "live";
  state.view = name;
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== `view-${name}`;
  for (const link of document.querySelectorAll("header nav a")) link.classList.toggle("active", link.id === `nav-${name === "call" ? "calls" : name}`);
  try {
    if (name === "calls") { await loadFacets(); await searchCalls(); }
    else if (name === "call") await showCall(decodeURIComponent(id || ""));
    else if (name === "dashboard") await showDashboard();
  } catch (e) { document.querySelector(`#view-${name} h2`).after(el("p", { class: "error" }, e.message)); }
}

async function main() {
  state.me = await api("/console/api/me");
  $("who").textContent = `${state.me.user} (${state.me.role})`;
  $("logout").onclick = async () => { await post("/console/logout"); location.href = "/console/login"; };
  $("filters").onsubmit = e => { e.preventDefault(); searchCalls(); };
  $("history-more").onclick = () => searchCalls(true);
  $("dash-hours").onchange = showDashboard;
  window.addEventListener("hashchange", route);
  startFeed();
  await route();
  state.ready = true;
}

document.addEventListener("DOMContentLoaded", main);  // after learn.js too
