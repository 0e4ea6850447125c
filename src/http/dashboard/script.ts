/**
 * The dashboard page's script. It runs in the browser: `dashboardScript()` is sent as its
 * source text (`Function.prototype.toString`), so it must stay self-contained (no imports,
 * nothing from this module's scope) and plain modern JavaScript once types are stripped.
 * Everything client-controlled reaches the page through `textContent`, never as HTML.
 */

// Browser globals, for this file only (the package compiles without the DOM library).
declare const document: any
declare const location: any
declare const window: any
declare const WebSocket: any
declare const requestAnimationFrame: (fn: () => void) => number

export function dashboardScript(): void {
  const $ = (sel: string): any => document.querySelector(sel)
  const el = (tag: string, cls?: string, text?: string): any => {
    const e = document.createElement(tag)
    if (cls) e.className = cls
    if (text !== undefined) e.textContent = text
    return e
  }
  const MAX_ROWS = 1000
  const MAX_SHOWN = 300

  // —— formatting ——
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0')
  const clock = (t: number): string => {
    const d = new Date(t)
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  }
  const bytes = (n: number): string => {
    if (n < 1024) return `${n} B`
    const units = ['KiB', 'MiB', 'GiB', 'TiB']
    let v = n / 1024
    let i = 0
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024
      i++
    }
    return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`
  }
  const num = (n: number): string => n.toLocaleString('en-US')
  const ago = (t: number, now: number): string => {
    const s = Math.max(0, Math.round((now - t) / 1000))
    if (s < 60) return `${s}s ago`
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s ago`
    const h = Math.floor(s / 3600)
    return h < 48 ? `${h}h ${Math.floor((s % 3600) / 60)}m ago` : `${Math.floor(h / 24)}d ago`
  }
  const rate = (n: number): string => (n >= 100 ? num(Math.round(n)) : n.toFixed(n >= 10 ? 0 : 1))

  // —— state ——
  const token = new URLSearchParams(location.search).get('token')
  let samples: any[] = []
  let rows: any[] = []
  let held: any[] = []
  let heldCount = 0
  let paused = false
  let dropped = 0
  let limits: any = { historySeconds: 600 }
  const eventNames = new Set<string>()
  let serverSkew = 0

  // —— feed ——
  let retry = 500
  function connectFeed(): void {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
    const path = `${location.pathname.replace(/\/+$/, '')}/feed`
    const q = token ? `?token=${encodeURIComponent(token)}` : ''
    const ws = new WebSocket(`${proto}//${location.host}${path}${q}`)
    setFeedState('connecting')
    ws.onopen = () => {
      retry = 500
      setFeedState('live')
    }
    ws.onmessage = (ev: any) => {
      let m: any
      try {
        m = JSON.parse(ev.data)
      } catch {
        return
      }
      if (m.t === 'hello') {
        limits = m.limits
        samples = m.samples
        showServer(m.server)
        showStats(m)
        drawCharts()
      } else if (m.t === 'stats') {
        samples.push(m.sample)
        while (samples.length > limits.historySeconds) samples.shift()
        showStats(m)
        drawCharts()
      } else if (m.t === 'events') {
        if (m.dropped) {
          dropped += m.dropped
          $('#feed-dropped').textContent = num(dropped)
        }
        addRows(m.events)
      }
    }
    ws.onclose = (ev: any) => {
      setFeedState(ev.code === 1001 ? 'server closed' : 'disconnected')
      setTimeout(connectFeed, retry)
      retry = Math.min(retry * 2, 5000)
    }
  }
  function setFeedState(s: string): void {
    const e = $('#feed-state')
    e.textContent = s
    e.dataset.state = s === 'live' ? 'live' : 'down'
  }

  // —— header, cards, tables ——
  function showServer(s: any): void {
    $('#server').textContent =
      `${s.address}:${s.port} · pid ${s.pid} · node ${s.node}` +
      (s.logPath ? ` · log ${s.logPath} (${s.logFormat})` : ' · log off')
    $('#server').dataset.started = String(s.startedAt)
  }

  function showStats(m: any): void {
    serverSkew = Date.now() - m.time
    const now = m.time
    const last = samples.length > 0 ? samples[samples.length - 1] : undefined
    $('#c-clients').textContent = num(m.clientsTotal)
    $('#c-in').textContent = last ? rate(last.in) : '0'
    $('#c-out').textContent = last ? rate(last.out) : '0'
    $('#c-bytes').textContent = last
      ? `${bytes(last.bytesIn)}/s in · ${bytes(last.bytesOut)}/s out`
      : ''
    const t = m.totals
    $('#c-totals').textContent =
      `${num(t.connects)} connects · ${num(t.disconnects)} closes · ${num(t.rejected)} rejected`
    $('#c-msgs').textContent = `${num(t.in)} in · ${num(t.out)} out`
    const started = Number($('#server').dataset.started)
    if (started) $('#uptime').textContent = `up ${ago(started, now).replace(' ago', '')}`

    const log = m.log
    const lh = $('#log-health')
    lh.replaceChildren()
    if (log === null) lh.append(el('div', 'muted', 'activity log off'))
    else {
      const items: Array<[string, string, string?]> = [
        ['lines', num(log.lines)],
        ['dropped', num(log.dropped), log.dropped > 0 ? 'bad' : ''],
        ['write errors', num(log.writeErrors), log.writeErrors > 0 ? 'bad' : ''],
        ['buffered', bytes(log.buffered)],
        ['writable', log.writable ? 'yes' : 'no', log.writable ? '' : 'bad'],
        ['rotations', num(log.rotations)],
      ]
      for (const [k, v, cls] of items) {
        const d = el('div', `kv ${cls ?? ''}`)
        d.append(el('span', 'k', k), el('span', 'v', v))
        d.dataset.key = k
        lh.append(d)
      }
    }
    $('#c-log').textContent = log === null ? 'off' : log.writable ? 'ok' : 'failing'
    $('#c-log').dataset.state = log === null || log.writable ? 'ok' : 'bad'
    $('#feed-dropped').textContent = num(Math.max(dropped, m.feed.dropped))
    $('#feed-watchers').textContent = num(m.feed.watchers)

    const tb = $('#clients tbody')
    tb.replaceChildren()
    for (const c of m.clients) {
      const tr = el('tr')
      tr.dataset.client = c.id
      const since = el('td', 'num', ago(c.since, now))
      since.title = new Date(c.since).toISOString()
      tr.append(
        el('td', 'mono', c.id),
        el('td', 'mono', `${c.ip}:${c.port}`),
        el('td', '', c.user ?? '—'),
        since,
        el('td', 'num', `${num(c.in)} / ${num(c.out)}`),
        el('td', 'num', `${bytes(c.bytesIn)} / ${bytes(c.bytesOut)}`),
      )
      tr.title = `${c.path}${c.protocol ? ` · ${c.protocol}` : ''}`
      tr.addEventListener('click', () => {
        $('#f-client').value = c.id
        renderTail()
      })
      tb.append(tr)
    }
    $('#clients-more').textContent =
      m.clientsTotal > m.clients.length
        ? `newest ${m.clients.length} of ${num(m.clientsTotal)} shown`
        : m.clientsTotal === 0
          ? 'no clients connected'
          : ''

    const cc = $('#close-codes tbody')
    cc.replaceChildren()
    for (const c of m.closeCodes) {
      const tr = el('tr')
      tr.dataset.code = String(c.code)
      tr.append(
        el('td', 'mono', String(c.code)),
        el('td', '', c.name ?? ''),
        el('td', 'num', num(c.count)),
      )
      cc.append(tr)
    }
    if (m.closeCodes.length === 0) {
      const tr = el('tr')
      tr.append(el('td', 'muted', 'none yet'))
      cc.append(tr)
    }
  }

  // —— charts (canvas) ——
  function drawChart(
    canvas: any,
    series: Array<{ key: string; color: string; bars?: boolean }>,
  ): void {
    const dpr = window.devicePixelRatio || 1
    const w = canvas.clientWidth
    const h = canvas.clientHeight
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr)
      canvas.height = Math.round(h * dpr)
    }
    const g = canvas.getContext('2d')
    g.setTransform(dpr, 0, 0, dpr, 0, 0)
    g.clearRect(0, 0, w, h)
    const left = 44
    const right = 8
    const top = 8
    const bottom = 18
    const pw = w - left - right
    const ph = h - top - bottom
    // The window grows with the history kept: a minute at first, up to historySeconds.
    const end = Date.now() - serverSkew
    const oldest = samples.length > 0 ? samples[0].t : end
    const span = Math.min(
      (limits.historySeconds || 600) * 1000,
      Math.max(60_000, end - oldest + 1000),
    )
    const start = end - span
    let max = 0
    for (const s of samples) for (const se of series) max = Math.max(max, s[se.key])
    // A round top for the scale: 1, 2, 5 × 10^n.
    let top10 = 1
    while (top10 * 10 <= max) top10 *= 10
    const nice =
      max <= top10
        ? top10
        : max <= 2 * top10
          ? 2 * top10
          : max <= 5 * top10
            ? 5 * top10
            : 10 * top10
    const x = (t: number): number => left + ((t - start) / span) * pw
    const y = (v: number): number => top + ph - (v / nice) * ph
    g.font = '11px ui-monospace, SFMono-Regular, Menlo, monospace'
    g.fillStyle = '#8b949e'
    g.strokeStyle = '#30363d'
    g.lineWidth = 1
    g.textAlign = 'right'
    g.textBaseline = 'middle'
    for (let i = 0; i <= 4; i++) {
      const v = (nice * i) / 4
      const yy = Math.round(y(v)) + 0.5
      g.beginPath()
      g.moveTo(left, yy)
      g.lineTo(w - right, yy)
      g.stroke()
      g.fillText(v >= 1000 ? `${v / 1000}k` : String(Math.round(v * 10) / 10), left - 6, yy)
    }
    g.textAlign = 'center'
    g.textBaseline = 'top'
    let step = 10
    for (const st of [10, 15, 30, 60, 120, 300]) {
      step = st
      if (span / 1000 / st <= 8) break
    }
    for (let sec = 0; sec * 1000 <= span; sec += step) {
      const label = sec === 0 ? 'now' : sec < 60 ? `-${sec}s` : `-${Math.round(sec / 6) / 10}m`
      g.fillText(label, x(end - sec * 1000), h - bottom + 4)
    }
    const barW = Math.max(1, pw / (span / 1000))
    for (const se of series) {
      g.strokeStyle = se.color
      g.fillStyle = se.color
      g.lineWidth = 1.5
      if (se.bars) {
        for (const s of samples) {
          const v = s[se.key]
          if (v > 0) g.fillRect(x(s.t) - barW, y(v), barW, top + ph - y(v))
        }
        continue
      }
      g.beginPath()
      let first = true
      for (const s of samples) {
        if (s.t < start) continue
        const xx = x(s.t)
        const yy = y(s[se.key])
        if (first) g.moveTo(xx, yy)
        else g.lineTo(xx, yy)
        first = false
      }
      g.stroke()
    }
  }
  let drawPending = false
  function drawCharts(): void {
    if (drawPending) return
    drawPending = true
    requestAnimationFrame(() => {
      drawPending = false
      drawChart($('#chart-msgs'), [
        { key: 'in', color: '#58a6ff' },
        { key: 'out', color: '#3fb950' },
      ])
      drawChart($('#chart-conns'), [
        { key: 'connects', color: '#d29922', bars: true },
        { key: 'disconnects', color: '#f85149', bars: true },
        { key: 'clients', color: '#bc8cff' },
      ])
    })
  }
  window.addEventListener('resize', drawCharts)

  // —— live tail ——
  const levelOf = (event: string): string =>
    /failed|log\.dropped|broker\.down/.test(event)
      ? 'error'
      : /rejected|error|denied|dropped|expired/.test(event)
        ? 'warn'
        : ''
  function matches(r: any): boolean {
    const ev = $('#f-event').value
    const cl = $('#f-client').value.trim()
    const ip = $('#f-ip').value.trim()
    const tx = $('#f-text').value.trim().toLowerCase()
    if (ev && r.event !== ev) return false
    if (cl && !(r.client ?? '').includes(cl) && !(r.user ?? '').includes(cl)) return false
    if (ip && !(r.ip ?? '').includes(ip)) return false
    if (tx && !`${r.event} ${r.text}`.toLowerCase().includes(tx)) return false
    return true
  }
  function rowEl(r: any): any {
    const tr = el('tr', `${levelOf(r.event)}${r.client && r.client === myId ? ' mine' : ''}`)
    tr.dataset.event = r.event
    if (r.client) tr.dataset.client = r.client
    tr.append(
      el('td', 'mono time', clock(r.time)),
      el('td', 'event', r.event),
      el('td', 'mono', r.client ?? ''),
      el('td', 'mono', r.ip ?? ''),
      el('td', '', r.user ?? ''),
      el('td', 'text', r.text),
    )
    return tr
  }
  function noteEvents(list: any[]): void {
    const sel = $('#f-event')
    for (const r of list) {
      if (eventNames.has(r.event)) continue
      eventNames.add(r.event)
      const names = [...eventNames].sort()
      const keep = sel.value
      sel.replaceChildren(el('option', '', 'all events'))
      sel.firstChild.value = ''
      for (const n of names) {
        const o = el('option', '', n)
        o.value = n
        sel.append(o)
      }
      sel.value = keep
    }
  }
  function addRows(list: any[]): void {
    noteEvents(list)
    for (const r of list) if (r.event === 'client.connected') recogniseConsole(r)
    if (paused) {
      heldCount += list.length
      held = held.concat(list).slice(-MAX_ROWS)
      $('#tail-held').textContent = `${num(heldCount)} new events held`
      return
    }
    rows = rows.concat(list).slice(-MAX_ROWS)
    const tb = $('#tail tbody')
    for (const r of list) if (matches(r)) tb.prepend(rowEl(r))
    while (tb.childElementCount > MAX_SHOWN) tb.lastChild.remove()
    updateTailCount()
  }
  function renderTail(): void {
    const tb = $('#tail tbody')
    tb.replaceChildren()
    let n = 0
    for (let i = rows.length - 1; i >= 0 && n < MAX_SHOWN; i--) {
      if (!matches(rows[i])) continue
      tb.append(rowEl(rows[i]))
      n++
    }
    updateTailCount()
  }
  function updateTailCount(): void {
    $('#tail-count').textContent =
      `${num($('#tail tbody').childElementCount)} shown of ${num(rows.length)} kept`
  }
  for (const id of ['#f-event', '#f-client', '#f-ip', '#f-text'])
    $(id).addEventListener('input', renderTail)
  $('#pause').addEventListener('click', () => {
    paused = !paused
    const b = $('#pause')
    b.textContent = paused ? 'Resume' : 'Pause'
    b.setAttribute('aria-pressed', String(paused))
    document.body.dataset.paused = String(paused)
    if (!paused) {
      const list = held
      held = []
      heldCount = 0
      $('#tail-held').textContent = ''
      addRows(list)
    } else $('#tail-held').textContent = '0 new events held'
  })
  $('#clear').addEventListener('click', () => {
    rows = []
    renderTail()
  })
  $('#f-reset').addEventListener('click', () => {
    for (const id of ['#f-event', '#f-client', '#f-ip', '#f-text']) $(id).value = ''
    renderTail()
  })

  // —— console: a client of the server, from this page ——
  let sock: any
  // The console's connection carries `?console=<tag>`: its connect row names its client id.
  let consoleTag = ''
  let myId = ''
  function recogniseConsole(r: any): void {
    if (!consoleTag || !` ${r.text} `.includes(`console=${consoleTag} `)) return
    myId = r.client
    const me = $('#console-id')
    me.textContent = `as ${myId}`
    me.dataset.client = myId
    $('#f-mine').disabled = false
  }
  $('#f-mine').addEventListener('click', () => {
    if (!myId) return
    $('#f-client').value = myId
    renderTail()
  })
  const consoleLine = (kind: string, text: string): void => {
    const log = $('#console-log')
    const d = el('div', `line ${kind}`)
    d.append(
      el('span', 'time mono', clock(Date.now())),
      el('span', 'dir', kind === 'in' ? '←' : kind === 'out' ? '→' : '·'),
      el('span', 'msg', text),
    )
    log.append(d)
    while (log.childElementCount > 200) log.firstChild.remove()
    log.scrollTop = log.scrollHeight
  }
  const setConsoleState = (s: string): void => {
    $('#console-state').textContent = s
    $('#console-state').dataset.state = s
    $('#console-connect').textContent =
      s === 'open' || s === 'connecting' ? 'Disconnect' : 'Connect'
    $('#console-send').disabled = s !== 'open'
  }
  $('#console-url').value = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/`
  $('#console-connect').addEventListener('click', () => {
    if (sock && sock.readyState <= 1) {
      sock.close(1000, 'closed from the dashboard')
      return
    }
    let s: any
    try {
      const url = new URL($('#console-url').value)
      consoleTag = Math.random().toString(36).slice(2, 10)
      url.searchParams.set('console', consoleTag)
      s = new WebSocket(url.href)
    } catch (err: any) {
      consoleLine('note', `cannot connect: ${err.message}`)
      return
    }
    sock = s
    setConsoleState('connecting')
    s.onopen = () => {
      setConsoleState('open')
      consoleLine('note', `connected to ${s.url}`)
    }
    s.onmessage = (ev: any) => consoleLine('in', typeof ev.data === 'string' ? ev.data : '[binary]')
    s.onclose = (ev: any) => {
      if (sock === s) {
        setConsoleState('closed')
        $('#console-id').textContent = ''
      }
      consoleLine('note', `closed ${ev.code}${ev.reason ? ` ${ev.reason}` : ''}`)
    }
  })
  $('#console-form').addEventListener('submit', (ev: any) => {
    ev.preventDefault()
    const text = $('#console-msg').value
    if (sock?.readyState !== 1 || text === '') return
    sock.send(text)
    consoleLine('out', text)
    $('#console-msg').value = ''
  })

  setConsoleState('closed')
  updateTailCount()
  setInterval(drawCharts, 1000)
  connectFeed()
}
