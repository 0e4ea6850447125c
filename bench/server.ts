/**
 * A server under test (a child process of run.ts), on 127.0.0.1 and a free port:
 *
 * - `raw-ws`: the baseline, a bare `ws` WebSocketServer (same ws version and add-ons as
 *   wirelog, same 1 MiB maxPayload, no compression) replying `Echo: ` + message the way a
 *   careful hand-written echo server would (prefix concatenated to the raw bytes, no
 *   decode/encode), with no logging and no events; `raw-ws-cork` is the same plus corking;
 * - `wirelog`: `createServer()` with its defaults except: loopback bind, no connection caps
 *   (the idle and scale parts open tens of thousands from one IP), heartbeat as configured
 *   (the bench default is off: the baseline has none and a 30 s sweep would land in some
 *   measurement windows and not others), and the log in a temp dir deleted afterwards.
 *
 * Reports `{ type: 'ready', port, pid }` on stdout, then obeys JSON commands on stdin (see
 * protocol.ts). Ends itself when stdin closes or `maxLifetimeMs` passes.
 */
import { createReadStream, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { WebSocketServer } from 'ws'
import { createServer, type WirelogServer } from '../src/index.js'
import {
  ECHO_PREFIX,
  type LogReport,
  type ServerCommand,
  type ServerConfig,
  type ServerReport,
} from './protocol.js'

const cfg = JSON.parse(process.argv[2] ?? '{}') as ServerConfig
const dir = mkdtempSync(join(tmpdir(), 'wirelog-bench-'))
const LOG_FILE = 'activity.log'

function report(msg: ServerReport): void {
  process.stdout.write(`${JSON.stringify(msg)}\n`)
}

function cleanup(): void {
  rmSync(dir, { recursive: true, force: true })
}

/** What every kind of server offers the harness. */
interface UnderTest {
  port: number
  /** Open connections now. */
  clients(): number
  /** Call `fn` on every connect/disconnect until it returns true (then unsubscribe). */
  watch(fn: () => boolean): void
  close(): Promise<LogReport | null>
}

/**
 * The raw baseline. `cork` (the opt-in `raw-ws-cork` server, a reference rather than a
 * baseline) also coalesces the echoes of one read into one write, as wirelog does, so that
 * wirelog's logging cost can be told apart from what its corking saves.
 */
async function startRaw(cork: boolean): Promise<UnderTest> {
  const prefix = Buffer.from(ECHO_PREFIX)
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    maxPayload: 1024 * 1024,
    perMessageDeflate: false,
  })
  const watchers = new Set<() => boolean>()
  const changed = (): void => {
    for (const w of watchers) if (w()) watchers.delete(w)
  }
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
      ws.send(isBinary ? data : Buffer.concat([prefix, data], prefix.length + data.length), {
        binary: isBinary,
      })
    })
    ws.on('error', () => {})
    ws.on('close', changed)
    changed()
  })
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve)
    wss.once('error', reject)
  })
  return {
    port: (wss.address() as AddressInfo).port,
    clients: () => wss.clients.size,
    watch: (fn) => {
      if (!fn()) watchers.add(fn)
    },
    close: async () => {
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      return null
    },
  }
}

async function startWirelog(): Promise<UnderTest> {
  const server: WirelogServer = createServer({
    host: '127.0.0.1',
    port: 0,
    timeout: cfg.heartbeat,
    log: { enabled: cfg.logging, dir, file: LOG_FILE, format: cfg.format, sync: cfg.sync },
    limits: { maxConnections: 0, maxConnectionsPerIp: 0 },
  })
  const addr = await server.listen()
  return {
    port: addr.port,
    clients: () => server.clients.size,
    watch: (fn) => {
      if (fn()) return
      // Subscribed only while someone waits, so the measured message path carries no extra handler.
      const offs: Array<() => void> = []
      const check = (): void => {
        if (fn()) for (const off of offs.splice(0)) off()
      }
      offs.push(server.events.on('ws', 'client.connected', check))
      offs.push(server.events.on('ws', 'client.disconnected', check))
    },
    close: async () => {
      await server.close('bench done')
      const stats = server.activityLog?.stats
      if (!stats) return null
      const files = readdirSync(dir).filter((f) => f.startsWith(LOG_FILE))
      let fileLines = 0
      let fileBytes = 0
      for (const f of files) {
        fileLines += await countLines(join(dir, f))
        fileBytes += statSync(join(dir, f)).size
      }
      return { ...stats, fileLines, fileBytes }
    },
  }
}

/** Newlines in a file, streamed (a saturated run writes hundreds of MB). */
async function countLines(path: string): Promise<number> {
  let n = 0
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const buf = chunk as Buffer
    for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) n++
  }
  return n
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
  const s =
    cfg.kind === 'wirelog' ? await startWirelog() : await startRaw(cfg.kind === 'raw-ws-cork')
  let closing = false
  const lifetime = setTimeout(() => {
    report({ type: 'error', message: `server lived past its limit of ${cfg.maxLifetimeMs} ms` })
    cleanup()
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
          .then((log) => {
            cleanup()
            clearTimeout(lifetime)
            report({ type: 'closed', log })
            process.exit(0)
          })
          .catch(fatal)
      }
    })
    .on('close', () => {
      // The orchestrator is gone (or done with us) without a 'close': leave nothing behind.
      if (!closing) {
        cleanup()
        process.exit(0)
      }
    })

  report({ type: 'ready', port: s.port, pid: process.pid, dir })
}

function fatal(err: unknown): void {
  report({
    type: 'error',
    message: err instanceof Error ? (err.stack ?? err.message) : String(err),
  })
  cleanup()
  process.exit(1)
}

process.on('uncaughtException', fatal)
process.on('unhandledRejection', fatal)
// Ctrl-C reaches the whole process group: leave no temp dir behind.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanup()
    process.exit(130)
  })
}
main().catch(fatal)
