/**
 * Hand-built WebSocket traffic for hostile-input tests: a raw `node:net` client that does a
 * real handshake and then writes whatever bytes a test wants, a frame builder that can break
 * every rule of RFC 6455, a parser for what the server sends back, raw HTTP requests, and
 * memory / file-descriptor probes.
 */
import { strict as assert } from 'node:assert'
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { connect, readLines, type TestClient, type TestServer, waitFor } from './helpers.js'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa } as const

export interface FrameOptions {
  /** FIN bit (default true). */
  fin?: boolean
  /** RSV bits as they sit in the first byte: 0x40 RSV1, 0x20 RSV2, 0x10 RSV3. */
  rsv?: number
  /** Mask the payload (default true: clients must). */
  mask?: boolean
  /** Announce this length instead of the payload's (bigint for 64-bit values). */
  length?: number | bigint
  /** Force the 16- or 64-bit length form. */
  lengthForm?: 7 | 16 | 64
}

/** One frame, exactly as asked, however wrong. */
export function frame(
  opcode: number,
  payload: Buffer | string = Buffer.alloc(0),
  o: FrameOptions = {},
): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload
  const fin = o.fin ?? true
  const mask = o.mask ?? true
  const len = BigInt(o.length ?? data.length)
  const form = o.lengthForm ?? (len < 126n ? 7 : len < 65536n ? 16 : 64)
  const head: number[] = [(fin ? 0x80 : 0) | (o.rsv ?? 0) | (opcode & 0x0f)]
  const m = mask ? 0x80 : 0
  if (form === 7) head.push(m | Number(len))
  else if (form === 16) head.push(m | 126, Number(len >> 8n) & 0xff, Number(len) & 0xff)
  else {
    head.push(m | 127)
    for (let i = 7; i >= 0; i--) head.push(Number((len >> BigInt(i * 8)) & 0xffn))
  }
  if (!mask) return Buffer.concat([Buffer.from(head), data])
  const key = randomBytes(4)
  const body = Buffer.allocUnsafe(data.length)
  for (let i = 0; i < data.length; i++) body[i] = data[i]! ^ key[i & 3]!
  return Buffer.concat([Buffer.from(head), key, body])
}

/** A close frame with an optional status code (any 16-bit value) and raw reason bytes. */
export function closeFrame(code?: number, reason: Buffer | string = Buffer.alloc(0)): Buffer {
  if (code === undefined) return frame(OP.CLOSE)
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason
  const body = Buffer.alloc(2 + r.length)
  body.writeUInt16BE(code, 0)
  r.copy(body, 2)
  return frame(OP.CLOSE, body)
}

export interface ServerFrame {
  fin: boolean
  rsv: number
  opcode: number
  payload: Buffer
}

export interface CloseInfo {
  code: number | undefined
  reason: string
  /** Milliseconds from `closeAfter()`'s mark (or connect) to the close frame. */
  at: number
}

export interface RawClient {
  socket: Socket
  /** The client's local port, which the server logs as `port=`. */
  port: number
  /** Frames the server sent, in order. */
  frames: ServerFrame[]
  /** Data frames (text/binary) as payloads. */
  messages(): Buffer[]
  /** Resolves with the server's close frame, or `null` if the TCP connection ended without one. */
  close: Promise<CloseInfo | null>
  /** Resolves when the TCP connection is fully closed. */
  ended: Promise<void>
  write(bytes: Buffer | string): boolean
  /** Write `bytes` one byte per TCP write, letting the server read each one on its own. */
  trickle(bytes: Buffer, stopWhen?: () => boolean): Promise<number>
  /** Wait for the server's close frame; fails after `timeoutMs`. */
  waitClose(timeoutMs?: number): Promise<CloseInfo>
  /** Wait for `n` data messages. */
  waitMessages(n: number, timeoutMs?: number): Promise<Buffer[]>
  /** Reset the time origin of `CloseInfo.at`. */
  mark(): void
  destroy(): void
}

export interface RawConnectOptions {
  path?: string
  /** Extra request header lines, e.g. `['Sec-WebSocket-Extensions: permessage-deflate']`. */
  headers?: string[]
  localAddress?: string
  /** Answer the server's close frame by ending our side (default true, like a real client). */
  endOnClose?: boolean
}

/** A loopback TCP socket (optionally from another 127.x source address) that never throws. */
function openSocket(port: number, localAddress?: string): Socket {
  const socket = netConnect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) })
  socket.setNoDelay(true)
  socket.on('error', () => {})
  return socket
}

/** Open a TCP connection, do a real handshake, check the 101 and its accept key. */
export async function rawConnect(
  port: number,
  o: RawConnectOptions = {},
): Promise<RawClient & { responseHeaders: string }> {
  const key = randomBytes(16).toString('base64')
  const socket = openSocket(port, o.localAddress)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.write(
    [
      `GET ${o.path ?? '/'} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      'Sec-WebSocket-Version: 13',
      ...(o.headers ?? []),
      '',
      '',
    ].join('\r\n'),
  )
  let buf = Buffer.alloc(0)
  const head = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.off('data', onData)
      socket.off('close', onClose)
      const h = buf.subarray(0, end).toString('latin1')
      buf = buf.subarray(end + 4)
      resolve(h)
    }
    const onClose = (): void =>
      reject(new Error(`handshake failed: connection closed (${buf.toString('latin1')})`))
    socket.on('data', onData)
    socket.on('close', onClose)
  })
  assert.match(head, /^HTTP\/1\.1 101 /, `expected a 101, got: ${head.split('\r\n')[0]}`)
  const accept = createHash('sha1')
    .update(key + GUID)
    .digest('base64')
  assert.match(
    head,
    new RegExp(`\r\nsec-websocket-accept: ${accept.replace(/[+/=]/g, '\\$&')}`, 'i'),
  )
  const client = wrap(socket, buf, o.endOnClose ?? true)
  return Object.assign(client, { responseHeaders: head })
}

function wrap(socket: Socket, initial: Buffer, endOnClose: boolean): RawClient {
  const frames: ServerFrame[] = []
  let pending = initial
  let t0 = Date.now()
  let gotClose: ((c: CloseInfo | null) => void) | undefined
  const close = new Promise<CloseInfo | null>((resolve) => {
    gotClose = resolve
  })
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const waiters: Array<() => void> = []
  const parse = (): void => {
    for (;;) {
      if (pending.length < 2) return
      const b0 = pending[0]!
      const b1 = pending[1]!
      let len = b1 & 0x7f
      let off = 2
      if (len === 126) {
        if (pending.length < 4) return
        len = pending.readUInt16BE(2)
        off = 4
      } else if (len === 127) {
        if (pending.length < 10) return
        len = Number(pending.readBigUInt64BE(2))
        off = 10
      }
      if (b1 & 0x80) off += 4 // servers must not mask; tolerate it in the parser anyway
      if (pending.length < off + len) return
      const f: ServerFrame = {
        fin: (b0 & 0x80) !== 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0f,
        payload: Buffer.from(pending.subarray(off, off + len)),
      }
      pending = pending.subarray(off + len)
      frames.push(f)
      if (f.opcode === OP.CLOSE) {
        gotClose!({
          code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : undefined,
          reason: f.payload.subarray(2).toString('utf8'),
          at: Date.now() - t0,
        })
        if (endOnClose) socket.end()
      }
      for (const w of waiters.splice(0)) w()
    }
  }
  socket.on('data', (d: Buffer) => {
    pending = pending.length === 0 ? d : Buffer.concat([pending, d])
    parse()
  })
  socket.once('close', () => {
    gotClose!(null)
    for (const w of waiters.splice(0)) w()
  })
  parse()
  const messages = (): Buffer[] =>
    frames.filter((f) => f.opcode === OP.TEXT || f.opcode === OP.BINARY).map((f) => f.payload)
  return {
    socket,
    port: socket.localPort!,
    frames,
    messages,
    close,
    ended,
    write: (bytes) => socket.write(bytes),
    trickle: async (bytes, stopWhen) => {
      let i = 0
      for (; i < bytes.length; i++) {
        if (socket.destroyed || socket.writableEnded || stopWhen?.()) break
        socket.write(bytes.subarray(i, i + 1))
        // Let the event loop poll so the server reads this byte before the next is written.
        await new Promise((r) => setImmediate(r))
      }
      return i
    },
    waitClose: async (timeoutMs = 2000) => {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no close frame from the server within ${timeoutMs} ms`)),
          timeoutMs,
        )
      })
      try {
        const c = await Promise.race([close, timeout])
        if (c === null) throw new Error('the server dropped the connection without a close frame')
        return c
      } finally {
        clearTimeout(timer)
      }
    },
    waitMessages: (n, timeoutMs = 2000) =>
      waitFor(
        () => (messages().length >= n ? messages() : undefined),
        `${n} message(s) from the server (got ${messages().length})`,
        timeoutMs,
      ),
    mark: () => {
      t0 = Date.now()
    },
    destroy: () => socket.destroy(),
  }
}

export interface HttpResult {
  status: number
  head: string
  body: string
  /** Milliseconds from the first byte written to the connection closing. */
  ms: number
}

/**
 * Send a raw HTTP request and collect the response until the server closes the connection.
 * With `trickleMs`, the request goes one byte every `trickleMs` and then keeps going with
 * `a` bytes for ever (a slow-loris never finishes its headers).
 */
export async function rawHttp(
  port: number,
  request: string,
  o: {
    trickleMs?: number
    timeoutMs?: number
    localAddress?: string
    /** Hang up as soon as the whole response is in, instead of waiting for the server to close. */
    impatient?: boolean
  } = {},
): Promise<HttpResult> {
  const socket = openSocket(port, o.localAddress)
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  const t0 = Date.now()
  let data = Buffer.alloc(0)
  socket.on('data', (d: Buffer) => {
    data = Buffer.concat([data, d])
    if (o.impatient) {
      const text = data.toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      const len = /\r\ncontent-length: (\d+)/i.exec(text)
      if (end >= 0 && len && data.length >= end + 4 + Number(len[1])) socket.destroy()
    }
  })
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  let trickler: NodeJS.Timeout | undefined
  if (o.trickleMs === undefined) socket.write(request)
  else {
    let i = 0
    trickler = setInterval(() => {
      if (socket.destroyed || !socket.writable) return
      socket.write(i < request.length ? request[i]! : 'a')
      i++
    }, o.trickleMs)
  }
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new Error(`server did not close the connection within ${o.timeoutMs ?? 3000} ms`)),
      o.timeoutMs ?? 3000,
    )
  })
  try {
    await Promise.race([closed, timeout])
  } finally {
    clearTimeout(timer)
    clearInterval(trickler)
    socket.destroy()
  }
  const text = data.toString('latin1')
  const end = text.indexOf('\r\n\r\n')
  const head = end < 0 ? text : text.slice(0, end)
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(head)
  return {
    status: m ? Number(m[1]) : 0,
    head,
    body: end < 0 ? '' : text.slice(end + 4),
    ms: Date.now() - t0,
  }
}

/** A valid upgrade request, with `patch` applied to its header lines. */
export function upgradeRequest(
  port: number,
  patch: { method?: string; drop?: string[]; set?: Record<string, string> } = {},
): string {
  const headers: Record<string, string> = {
    Host: `127.0.0.1:${port}`,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    ...patch.set,
  }
  for (const d of patch.drop ?? []) delete headers[d]
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`)
  return `${patch.method ?? 'GET'} / HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`
}

/** `p`, or a failure naming `what` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

// --- the activity log, parsed (tests run the server with `log.format: 'json'`) ---

export interface LogEntry {
  event: string
  msg: string
  [key: string]: unknown
}

export function entries(t: TestServer): LogEntry[] {
  return readLines(t.logPath).map((l) => JSON.parse(l) as LogEntry)
}

/** Wait until at least `count` entries match `pred`; returns all that match. */
export function waitEntries(
  t: TestServer,
  pred: (e: LogEntry) => boolean,
  what: string,
  count = 1,
  timeoutMs = 3000,
): Promise<LogEntry[]> {
  return waitFor(
    () => {
      const m = entries(t).filter(pred)
      return m.length >= count ? m : undefined
    },
    what,
    timeoutMs,
  )
}

/** The id the server gave the client whose local port is `port` (from its `client.connected` line). */
export async function clientId(t: TestServer, port: number): Promise<string> {
  const [e] = await waitEntries(
    t,
    (e) => e.event === 'client.connected' && e.port === port,
    `client.connected for port ${port}`,
  )
  return e!.client as string
}

/** Every log entry about one client. */
export function entriesOf(t: TestServer, id: string): LogEntry[] {
  return entries(t).filter((e) => e.client === id)
}

/** Wait for the one `client.disconnected` line of client `id`, and check there is exactly one. */
export async function disconnectOf(t: TestServer, id: string, timeoutMs = 3000): Promise<LogEntry> {
  const [d] = await waitEntries(
    t,
    (e) => e.event === 'client.disconnected' && e.client === id,
    `client.disconnected for ${id}`,
    1,
    timeoutMs,
  )
  return d!
}

/** Connect a `ws` client and learn the id the server gave it (from the `client.connected` event). */
export async function connectWithId(
  t: TestServer,
  opts: Parameters<typeof connect>[1] = {},
): Promise<TestClient & { id: string }> {
  let id: string | undefined
  const off = t.server.events.on('ws', 'client.connected', (e) => {
    id ??= e.client.id
  })
  try {
    const c = await connect(t.url, opts)
    assert.ok(id, 'client.connected fired before the client saw its 101')
    return Object.assign(c, { id })
  } finally {
    off()
  }
}

// --- bystanders: the "no other client affected" half of every case ---

let seq = 0

/**
 * The bystander still echoes, and a brand-new client can connect, echo and leave. Also a log
 * barrier: it returns once the fresh client's message is in the log, so every line of what
 * happened before is on disk too (lines are written in order).
 */
export async function assertServing(
  t: TestServer,
  bystander: TestClient,
  prefix = 'Echo: ',
): Promise<void> {
  const n = ++seq
  const before = bystander.received.length
  bystander.ws.send(`bystander ${n}`)
  const got = await bystander.waitMessages(before + 1, 2000)
  assert.equal(got[before], `${prefix}bystander ${n}`, 'the bystander still gets its own echo')
  assert.equal(bystander.ws.readyState, 1, 'the bystander is still open')
  const fresh = await connect(t.url)
  fresh.ws.send(`fresh ${n}`)
  assert.deepEqual(
    await fresh.waitMessages(1, 2000),
    [`${prefix}fresh ${n}`],
    'a fresh client is served',
  )
  fresh.ws.close()
  await fresh.closed
  await waitEntries(
    t,
    (e) => e.event === 'message.received' && e.msg === `Message received: fresh ${n}`,
    `the log line of "fresh ${n}"`,
  )
}

// --- the common shape of a hostile-frame case ---

export interface ExpectCloseOptions {
  /** Most ms from the first hostile byte to the close frame (default 3000). */
  withinMs?: number
  connect?: RawConnectOptions
  /** Send the bytes one byte per TCP write (stopping once the close frame is in). */
  trickle?: boolean
}

export interface ClosedCase {
  client: RawClient
  close: CloseInfo
  disconnect: LogEntry
  /** Bytes written before the server closed (with `trickle`). */
  written: number
}

/**
 * Connect raw, send `bytes`, and check: a close frame with exactly `code`; the connection
 * closed; exactly one `client.disconnected` line with that code and a reason matching
 * `reason`; exactly one `client.error` line saying the same; no message delivered; and the
 * bystander plus a fresh client still served.
 */
export async function expectClose(
  t: TestServer,
  bystander: TestClient,
  bytes: Buffer,
  code: number,
  reason: RegExp,
  o: ExpectCloseOptions = {},
): Promise<ClosedCase> {
  const c = await rawConnect(t.port, o.connect)
  const id = await clientId(t, c.port)
  c.mark()
  let written = bytes.length
  if (o.trickle) written = await c.trickle(bytes, () => c.frames.some((f) => f.opcode === OP.CLOSE))
  else c.write(bytes)
  const close = await c.waitClose(o.withinMs ?? 3000)
  assert.equal(close.code, code, `close code (reason on the wire: ${JSON.stringify(close.reason)})`)
  await c.ended
  const d = await disconnectOf(t, id)
  assert.equal(d.code, code, 'the disconnect line carries the code sent')
  assert.match(String(d.reason), reason)
  assert.equal(d.initiator, 'server')
  await assertServing(t, bystander) // also a log barrier: a duplicate line would be on disk by now
  const mine = entriesOf(t, id)
  assert.equal(
    mine.filter((e) => e.event === 'client.disconnected').length,
    1,
    'exactly one disconnect line',
  )
  const errors = mine.filter((e) => e.event === 'client.error')
  assert.equal(errors.length, 1, 'exactly one client.error line')
  assert.equal(errors[0]!.close_code, code)
  assert.equal(
    mine.filter((e) => e.event === 'message.received').length,
    0,
    'nothing was delivered',
  )
  return { client: c, close, disconnect: d, written }
}

// --- memory and file descriptors ---

let gcFn: (() => void) | undefined
/** Full GC (via `--expose-gc` set at run time), so heap numbers mean live memory. */
export function gc(): void {
  if (gcFn === undefined) {
    setFlagsFromString('--expose-gc')
    gcFn = runInNewContext('gc') as () => void
  }
  gcFn()
  gcFn()
}

/** Live memory after a full GC: JS heap plus Buffers and other external memory. */
export function liveBytes(): number {
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.external
}

/**
 * Track the peak of live memory while `run` works: heap + external after a full GC, sampled
 * every `everyMs` between event-loop turns. That is what the attack keeps alive at its worst
 * (garbage excluded, so the numbers do not depend on when V8 chose to collect).
 */
export async function peakGrowth<T>(
  run: () => Promise<T>,
  everyMs = 50,
): Promise<{ result: T; peak: number; after: number }> {
  const base = liveBytes()
  let peak = 0
  const sample = (): void => {
    gcFn!()
    const m = process.memoryUsage()
    peak = Math.max(peak, m.heapUsed + m.external - base)
  }
  const timer = setInterval(sample, everyMs)
  try {
    const result = await run()
    sample()
    return { result, peak, after: liveBytes() - base }
  } finally {
    clearInterval(timer)
  }
}

export const MiB = 1024 * 1024

/** Assert `bytes < bound` and print the measurement in the test report. */
export function assertBelow(
  ctx: { diagnostic(msg: string): void },
  what: string,
  bytes: number,
  bound: number,
): void {
  const msg = `${what}: ${(bytes / MiB).toFixed(2)} MiB (bound ${(bound / MiB).toFixed(0)} MiB)`
  ctx.diagnostic(msg)
  assert.ok(bytes < bound, msg)
}

/** Open file descriptors of this process. */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length
}
