/**
 * The dashboard page: one HTML document with its style and script inline, so it works with
 * no network beyond the server itself and ships inside the package as plain strings. The
 * Content-Security-Policy allows exactly this script and style (by hash), WebSocket
 * connections and nothing else.
 */
import { createHash } from 'node:crypto'
import { dashboardScript } from './script.js'

const STYLE = `
:root { color-scheme: dark; --bg: #0d1117; --panel: #161b22; --line: #30363d; --fg: #e6edf3;
  --muted: #8b949e; --blue: #58a6ff; --green: #3fb950; --amber: #d29922; --red: #f85149;
  --violet: #bc8cff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.mono, code, .time { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
header { display: flex; gap: 16px; align-items: baseline; padding: 10px 16px;
  border-bottom: 1px solid var(--line); background: var(--panel); }
header h1 { font-size: 15px; margin: 0; }
header h1 span { color: var(--muted); font-weight: 400; }
#server, #uptime { color: var(--muted); }
#feed-state { margin-left: auto; padding: 1px 8px; border-radius: 10px; background: #3d1d20; color: var(--red); }
#feed-state[data-state=live] { background: #12261e; color: var(--green); }
main { padding: 12px 16px; display: grid; gap: 12px; }
.cards { display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px; }
.card, .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; min-width: 0; }
.card .label, .panel h2 { color: var(--muted); font-size: 12px; font-weight: 500; margin: 0 0 4px;
  text-transform: uppercase; letter-spacing: .04em; }
.card .big { font-size: 24px; font-weight: 600; }
.card .small { color: var(--muted); font-size: 12px; }
#c-log[data-state=bad] { color: var(--red); }
.row2 { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.row3 { display: grid; grid-template-columns: 2fr 1fr 1.3fr; gap: 12px; }
canvas { width: 100%; height: 160px; display: block; }
.legend { display: flex; gap: 12px; color: var(--muted); font-size: 12px; }
.legend i { display: inline-block; width: 10px; height: 3px; margin-right: 4px; vertical-align: middle; }
.legend .in { background: var(--blue); } .legend .out { background: var(--green); }
.legend .clients { background: var(--violet); } .legend .conn { background: var(--amber); }
.legend .disc { background: var(--red); }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; color: var(--muted); font-weight: 500; font-size: 12px; border-bottom: 1px solid var(--line); padding: 3px 6px; }
td { padding: 3px 6px; border-bottom: 1px solid #21262d; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; }
.scroll { max-height: 260px; overflow: auto; }
#clients tbody tr { cursor: pointer; }
#clients tbody tr:hover { background: #1f2630; }
.muted { color: var(--muted); }
.panel h2.sub { margin-top: 12px; }
.kv { display: flex; justify-content: space-between; padding: 2px 0; border-bottom: 1px solid #21262d; }
.kv .k { color: var(--muted); } .kv.bad .v { color: var(--red); font-weight: 600; }
.filters { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 8px; }
input, select, button { background: var(--bg); color: var(--fg); border: 1px solid var(--line);
  border-radius: 4px; padding: 4px 8px; font: inherit; }
input:focus, select:focus { outline: 1px solid var(--blue); }
button { cursor: pointer; background: #21262d; }
button:hover { border-color: var(--muted); }
button:disabled { opacity: .5; cursor: default; }
#pause[aria-pressed=true] { background: #3b2e12; border-color: var(--amber); color: var(--amber); }
#tail-held { color: var(--amber); }
#tail-count, #clients-more { color: var(--muted); font-size: 12px; }
#tail .scroll { max-height: 420px; }
#tail td.text { word-break: break-all; }
#tail td.event { white-space: nowrap; color: var(--blue); }
#tail td.time { white-space: nowrap; color: var(--muted); }
#tail tr.warn td.event { color: var(--amber); }
#tail tr.error td.event { color: var(--red); }
#tail tr.mine td { background: #141d2b; }
#tail tr.mine td:first-child { box-shadow: inset 3px 0 0 var(--blue); }
#console-form { display: flex; gap: 6px; margin-top: 6px; }
#console-form input { flex: 1; min-width: 0; }
.console-top { display: flex; gap: 6px; }
.console-top input { flex: 1; min-width: 0; }
#console-log { height: 170px; overflow: auto; margin-top: 6px; background: var(--bg);
  border: 1px solid var(--line); border-radius: 4px; padding: 4px 6px; }
#console-log .line { display: flex; gap: 6px; }
#console-log .dir { color: var(--muted); }
#console-log .in .msg { color: var(--green); } #console-log .out .msg { color: var(--blue); }
#console-log .note .msg { color: var(--muted); }
#console-state { color: var(--muted); }
#console-state[data-state=open] { color: var(--green); }
@media (max-width: 1000px) { .cards { grid-template-columns: repeat(2, 1fr); } .row2, .row3 { grid-template-columns: 1fr; } }
`

const SCRIPT = `(${dashboardScript.toString()})()\n`

const HTML_BODY = `
<header>
  <h1>wirelog <span>dashboard</span></h1>
  <span id="server" class="mono">…</span>
  <span id="uptime"></span>
  <span id="feed-state" data-state="down">connecting</span>
</header>
<main>
  <section class="cards">
    <div class="card"><div class="label">Clients</div><div class="big" id="c-clients">0</div>
      <div class="small" id="c-totals"></div></div>
    <div class="card"><div class="label">Messages in / s</div><div class="big" id="c-in">0</div>
      <div class="small" id="c-bytes"></div></div>
    <div class="card"><div class="label">Messages out / s</div><div class="big" id="c-out">0</div>
      <div class="small" id="c-msgs"></div></div>
    <div class="card"><div class="label">Activity log</div><div class="big" id="c-log">…</div>
      <div class="small">see log health below</div></div>
    <div class="card"><div class="label">Feed</div><div class="big" id="feed-dropped">0</div>
      <div class="small">events not shown (rate bound) · <span id="feed-watchers">0</span> watching</div></div>
  </section>
  <section class="row2">
    <div class="panel"><h2>Messages / s</h2>
      <div class="legend"><span><i class="in"></i>in</span><span><i class="out"></i>out</span></div>
      <canvas id="chart-msgs"></canvas></div>
    <div class="panel"><h2>Connections</h2>
      <div class="legend"><span><i class="clients"></i>connected</span><span><i class="conn"></i>connects / s</span><span><i class="disc"></i>disconnects / s</span></div>
      <canvas id="chart-conns"></canvas></div>
  </section>
  <section class="row3">
    <div class="panel" id="clients"><h2>Connected clients</h2>
      <div class="scroll"><table>
        <thead><tr><th>id</th><th>address</th><th>user</th><th class="num">since</th><th class="num">msgs in / out</th><th class="num">bytes in / out</th></tr></thead>
        <tbody></tbody></table></div>
      <div id="clients-more"></div></div>
    <div class="panel"><h2>Close codes</h2>
      <table id="close-codes"><thead><tr><th>code</th><th>name</th><th class="num">count</th></tr></thead><tbody></tbody></table>
      <h2 class="sub">Log health</h2>
      <div id="log-health"></div></div>
    <div class="panel" id="console"><h2>Console</h2>
      <div class="console-top"><input id="console-url" class="mono" aria-label="WebSocket URL" spellcheck="false">
        <button id="console-connect" type="button">Connect</button></div>
      <div class="muted">state: <span id="console-state">closed</span> <span id="console-id" class="mono"></span></div>
      <form id="console-form"><input id="console-msg" placeholder="message" aria-label="message to send" autocomplete="off">
        <button id="console-send" type="submit" disabled>Send</button></form>
      <div id="console-log" class="mono"></div></div>
  </section>
  <section class="panel" id="tail"><h2>Live tail</h2>
    <div class="filters">
      <select id="f-event" aria-label="event"><option value="">all events</option></select>
      <input id="f-client" placeholder="client or user" aria-label="client" spellcheck="false">
      <input id="f-ip" placeholder="address" aria-label="address" spellcheck="false">
      <input id="f-text" placeholder="text" aria-label="text" spellcheck="false">
      <button id="f-mine" type="button" disabled title="only the console's connection">Mine</button>
      <button id="f-reset" type="button">Reset</button>
      <button id="pause" type="button" aria-pressed="false">Pause</button>
      <button id="clear" type="button">Clear</button>
      <span id="tail-held"></span>
      <span id="tail-count"></span>
    </div>
    <div class="scroll"><table>
      <thead><tr><th>time</th><th>event</th><th>client</th><th>address</th><th>user</th><th>text</th></tr></thead>
      <tbody></tbody></table></div>
  </section>
</main>
`

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s).digest('base64')}'`

/** The policy the page is served with: its own script and style, WebSockets, nothing else. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self' ws: wss:",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>wirelog dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>${HTML_BODY}<script>${SCRIPT}</script>
</body>
</html>
`
