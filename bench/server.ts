/**
 * A reference server (a child process of run.ts), on 127.0.0.1 and a free port. Each replies
 * to a text message with `Echo: ` + message, concatenated to the raw bytes (no decode/encode:
 * what a careful hand-written echo server does, and what wirelog does), and echoes binary as
 * it came; none logs, none pings, none caps connections:
 *
 * - `raw-ws`: a bare `ws` WebSocketServer (the same ws version and add-ons as wirelog, the same
 *   1 MiB maxPayload, no compression);
 * - `raw-ws-cork`: the same, plus corking the socket for the rest of the tick on the first
 *   send, as wirelog does, so that the echoes of one read leave in one write. wirelog against
 *   this one is the cost of wirelog itself (its log, events, limits, heartbeat);
 * - `uws`: uWebSockets.js (the `uwebsockets` repackage, loaded from the directory uws.ts
 *   installed it in), with the same payload limit and compression off; it corks inside its
 *   handlers by itself.
 *
 * wirelog itself is not started here: the bench runs the real CLI (`dist/cli.js`).
 *
 * Reports `{ type: 'ready', port, pid }` on stdout, then obeys JSON commands on stdin (see
 * protocol.ts). Ends itself when stdin closes or `maxLifetimeMs` passes.
 */
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { WebSocketServer } from 'ws'
import {
  ECHO_PREFIX,
  type ServerCommand,
  type ServerConfig,
  type ServerReport,
} from './protocol.js'

const cfg = JSON.parse(process.argv[2] ?? '{}') as ServerConfig
const MAX_PAYLOAD = 1024 * 1024
const PREFIX = Buffer.from(ECHO_PREFIX)

function report(msg: ServerReport): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`)
}

/** What every kind of server offers the harness. */
interface UnderTest {
  port: number
  /** Open connections now. */
  clients(): number
  /** Call `fn` on every connect/disconnect until it returns true (then stop calling it). */
  watch(fn: () => boolean): void
  close(): Promise<void>
}

class Watchers {
  readonly #set = new Set<() => boolean>()
  add(fn: () => boolean): void {
    if (!fn()) this.#set.add(fn)
  }
  changed(): void {
    for (const w of this.#set) if (w()) this.#set.delete(w)
  }
}

async function startRaw(cork: boolean): Promise<UnderTest> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    maxPayload: MAX_PAYLOAD,
    perMessageDeflate: false,
  })
  const watchers = new Watchers()
  wss.on('connection', (ws, req) => {
    // ws writes to the very socket of the upgrade request.
    const socket = req.socket
    let corked = false
    const uncork = (): void => {
      corked = false
      socket.uncork()
    }
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (cork && !corked) {
        corked = true
        socket.cork()
        process.nextTick(uncork)
      }
      ws.send(isBinary ? data : Buffer.concat([PREFIX, data], PREFIX.length + data.length), {
        binary: isBinary,
      })
    })
    ws.on('error', () => {})
    ws.on('close', () => watchers.changed())
    watchers.changed()
  })
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve)
    wss.once('error', reject)
  })
  return {
    port: (wss.address() as AddressInfo).port,
    clients: () => wss.clients.size,
    watch: (fn) => watchers.add(fn),
    close: async () => {
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}

/** The part of uWebSockets.js used here (the package's own types are not a dependency). */
interface UwsSocket {
  send(message: Uint8Array, isBinary: boolean): number
  end(code?: number): void
}
interface UwsApp {
  ws(
    pattern: string,
    behaviour: {
      compression: number
      maxPayloadLength: number
      maxBackpressure: number
      idleTimeout: number
      sendPingsAutomatically: boolean
      open: (ws: UwsSocket) => void
      message: (ws: UwsSocket, message: ArrayBuffer, isBinary: boolean) => void
      close: (ws: UwsSocket) => void
    },
  ): UwsApp
  listen(host: string, port: number, cb: (token: unknown) => void): UwsApp
  close(): UwsApp
}
interface Uws {
  App(): UwsApp
  DISABLED: number
  us_socket_local_port(token: unknown): number
  us_listen_socket_close(token: unknown): void
}

async function startUws(dir: string): Promise<UnderTest> {
  const uws = createRequire(join(dir, 'package.json'))('uwebsockets') as Uws
  const open = new Set<UwsSocket>()
  const watchers = new Watchers()
  let dropped = 0
  const app = uws.App().ws('/*', {
    compression: uws.DISABLED,
    maxPayloadLength: MAX_PAYLOAD,
    // As much room as wirelog's default outbound cap per client (8 MiB): nothing is dropped.
    maxBackpressure: 8 * 1024 * 1024,
    idleTimeout: 0,
    sendPingsAutomatically: false,
    open: (ws) => {
      open.add(ws)
      watchers.changed()
    },
    message: (ws, message, isBinary) => {
      // `message` is only valid during this call; concat copies it.
      const data = new Uint8Array(message)
      const status = ws.send(
        isBinary ? data : Buffer.concat([PREFIX, data], PREFIX.length + data.length),
        isBinary,
      )
      if (status === 2 && dropped++ === 0)
        report({ type: 'error', message: 'uws dropped an echo (backpressure limit)' })
    },
    close: (ws) => {
      open.delete(ws)
      watchers.changed()
    },
  })
  const token = await new Promise<unknown>((resolve, reject) => {
    app.listen('127.0.0.1', 0, (t) => (t ? resolve(t) : reject(new Error('uws: listen failed'))))
  })
  return {
    port: uws.us_socket_local_port(token),
    clients: () => open.size,
    watch: (fn) => watchers.add(fn),
    close: async () => {
      uws.us_listen_socket_close(token)
      for (const ws of [...open]) ws.end(1001)
      app.close()
    },
  }
}

function start(): Promise<UnderTest> {
  switch (cfg.kind) {
    case 'raw-ws':
      return startRaw(false)
    case 'raw-ws-cork':
      return startRaw(true)
    case 'uws':
      if (!cfg.uwsDir) throw new Error('uws: no uwsDir in the config')
      return startUws(cfg.uwsDir)
    default:
      throw new Error(`server.ts does not run ${JSON.stringify(cfg.kind)}`)
  }
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc
  if (g) {
    // Twice: the first pass can leave work (weak callbacks, finalizers) for a second.
    g()
    g()
  }
}

async function main(): Promise<void> {
  const s = await start()
  let closing = false
  const lifetime = setTimeout(() => {
    report({ type: 'error', message: `server lived past its limit of ${cfg.maxLifetimeMs} ms` })
    process.exit(1)
  }, cfg.maxLifetimeMs)

  createInterface({ input: process.stdin })
    .on('line', (line) => {
      const c = JSON.parse(line) as ServerCommand
      if (c.cmd === 'gc') {
        gc()
        const m = process.memoryUsage()
        report({ type: 'gc', rss: m.rss, heapUsed: m.heapUsed })
      } else if (c.cmd === 'waitClients') {
        let settled = false
        const t = setTimeout(() => {
          settled = true
          report({ type: 'clients', n: s.clients(), ok: false })
        }, c.timeoutMs)
        s.watch(() => {
          if (settled) return true
          if (s.clients() !== c.n) return false
          settled = true
          clearTimeout(t)
          report({ type: 'clients', n: c.n, ok: true })
          return true
        })
      } else if (c.cmd === 'close' && !closing) {
        closing = true
        s.close()
          .then(() => {
            clearTimeout(lifetime)
            report({ type: 'closed' })
            process.exit(0)
          })
          .catch(fatal)
      }
    })
    // The orchestrator is gone (or done with us) without a 'close': leave.
    .on('close', () => {
      if (!closing) process.exit(0)
    })

  report({ type: 'ready', port: s.port, pid: process.pid })
}

function fatal(err: unknown): void {
  report({
    type: 'error',
    message: err instanceof Error ? (err.stack ?? err.message) : String(err),
  })
  process.exit(1)
}

process.on('uncaughtException', fatal)
process.on('unhandledRejection', fatal)
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130))
main().catch(fatal)
