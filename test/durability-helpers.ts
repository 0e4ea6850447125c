/**
 * Helpers of the durability tests (test/durability-*.test.ts) and the soak (bench/soak.ts):
 * a load generator of many echo clients with unique, matchable message contents, a strict
 * NDJSON log reader, and a tiny tmpfs for disk-full cases.
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'

/** Reject if `p` has not settled after `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(t))
}

export interface LoadClient {
  readonly index: number
  readonly ws: WebSocket
  /** Local TCP port: the `port` field of this client's `client.connected` line. */
  localPort: number
  /** Contents sent, in order. */
  readonly sent: string[]
  /** Content → Date.now() when its echo arrived. */
  readonly echoed: Map<string, number>
  /** Resolves with [code, reason] when the socket closes. */
  readonly closed: Promise<[number, string]>
}

export interface Load {
  readonly clients: LoadClient[]
  /** Echoes received by all clients so far. */
  echoes(): number
  /** Stop sending new messages (in-flight ones still get their echo). */
  stop(): void
  /** Start sending again after `stop()`. */
  resume(): void
  /** Resolves once every message sent so far has been echoed (stop() first). */
  settle(timeoutMs?: number): Promise<void>
  /** Resolves once `n` echoes in total have arrived (rejects after `timeoutMs`). */
  waitEchoes(n: number, timeoutMs?: number): Promise<void>
  /** Close every client normally and wait for all of them. */
  closeAll(): Promise<void>
}

export interface LoadOptions {
  /** Clients to open. */
  clients: number
  /** Messages in flight per client (each echo triggers the next send). */
  window?: number
  /** Most messages one client sends in total. */
  maxPerClient?: number
  /** Distinguishes the contents of several loads against one server. */
  tag?: string
  /** Extra characters appended to each message (bigger lines). */
  pad?: number
  /** Echo prefix of the server. */
  echoPrefix?: string
}

/**
 * Open `clients` connections (all to 127.0.0.1) that each keep `window` messages in flight
 * until `stop()` or `maxPerClient`. Message `j` of client `i` is `<tag>-c<i>-m<j><pad>`.
 */
export async function startLoad(url: string, o: LoadOptions): Promise<Load> {
  const window = o.window ?? 2
  const max = o.maxPerClient ?? 10_000
  const tag = o.tag ?? 'L'
  const pad = o.pad ? `-${'p'.repeat(o.pad)}` : ''
  const prefix = o.echoPrefix ?? 'Echo: '
  let running = true
  let total = 0
  let waiters: Array<() => void> = []
  const clients: LoadClient[] = []
  const senders: Array<() => void> = []

  const open = (index: number): Promise<LoadClient> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(url)
      const sent: string[] = []
      const echoed = new Map<string, number>()
      const closed = new Promise<[number, string]>((r) => {
        ws.on('close', (code, reason) => r([code, reason.toString()]))
      })
      const c: LoadClient = { index, ws, localPort: 0, sent, echoed, closed }
      const sendNext = (): void => {
        if (!running || sent.length >= max || ws.readyState !== WebSocket.OPEN) return
        const content = `${tag}-c${index}-m${sent.length}${pad}`
        sent.push(content)
        ws.send(content)
      }
      ws.on('message', (data: Buffer) => {
        const text = data.toString('utf8')
        const content = text.startsWith(prefix) ? text.slice(prefix.length) : text
        echoed.set(content, Date.now())
        total++
        if (waiters.length > 0) {
          const w = waiters
          waiters = []
          for (const f of w) f()
        }
        sendNext()
      })
      ws.on('error', (err) => {
        if (ws.readyState === WebSocket.CONNECTING) reject(err)
      })
      const topUp = (): void => {
        for (let k = sent.length - echoed.size; k < window; k++) sendNext()
      }
      senders.push(topUp)
      ws.once('open', () => {
        c.localPort = (ws as unknown as { _socket: { localPort: number } })._socket.localPort
        resolve(c)
        topUp()
      })
    })

  // Connect in batches so the accept queue never overflows.
  for (let i = 0; i < o.clients; i += 50) {
    const batch: Array<Promise<LoadClient>> = []
    for (let k = i; k < Math.min(o.clients, i + 50); k++) batch.push(open(k))
    clients.push(...(await Promise.all(batch)))
  }

  return {
    clients,
    echoes: () => total,
    stop: () => {
      running = false
    },
    resume: () => {
      running = true
      for (const f of senders) f()
    },
    settle: async (timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs
      const open = (c: LoadClient): boolean => c.ws.readyState === WebSocket.OPEN
      while (clients.some((c) => open(c) && c.echoed.size < c.sent.length)) {
        if (Date.now() > deadline) throw new Error('timed out waiting for in-flight echoes')
        await new Promise((r) => setTimeout(r, 5))
      }
    },
    waitEchoes: (n, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`timed out waiting for ${n} echoes (got ${total})`)),
          timeoutMs,
        )
        const check = (): void => {
          if (total >= n) {
            clearTimeout(t)
            resolve()
          } else waiters.push(check)
        }
        check()
      }),
    closeAll: async () => {
      running = false
      for (const c of clients) c.ws.close(1000)
      await Promise.all(clients.map((c) => c.closed))
    },
  }
}

/** One parsed line of a `json`-format activity log. */
export interface LogRecord {
  level: number
  time: number
  event: string
  msg: string
  client?: string
  port?: number
  code?: number
  [key: string]: unknown
}

export interface ParsedLog {
  records: LogRecord[]
  /** Lines that did not parse as JSON (file:line: text). */
  torn: string[]
  /** Files whose last byte is not a newline. */
  unterminated: string[]
}

/** Read and parse every line of `paths` (in order); missing files are skipped. */
export function parseLog(paths: string[]): ParsedLog {
  const out: ParsedLog = { records: [], torn: [], unterminated: [] }
  for (const path of paths) {
    if (!existsSync(path)) continue
    const text = readFileSync(path, 'utf8')
    if (text.length > 0 && !text.endsWith('\n')) out.unterminated.push(path)
    const lines = text.split('\n')
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!
      if (line.length === 0) continue
      try {
        out.records.push(JSON.parse(line) as LogRecord)
      } catch {
        out.torn.push(`${path}:${i + 1}: ${line.slice(0, 200)}`)
      }
    }
  }
  return out
}

/** The activity log and its rotated siblings (`file`, `file.1`, …), oldest first. */
export function logFiles(dir: string, file: string): string[] {
  const rotated = readdirSync(dir)
    .map((n) => (n.startsWith(`${file}.`) ? Number(n.slice(file.length + 1)) : Number.NaN))
    .filter((n) => Number.isInteger(n) && n > 0)
    .sort((a, b) => b - a)
  return [...rotated.map((n) => join(dir, `${file}.${n}`)), join(dir, file)]
}

const MESSAGE_PREFIX = 'Message received: '

/** Content of every `message.received` record → how many times it appears. */
export function messageCounts(records: LogRecord[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const r of records) {
    if (r.event !== 'message.received') continue
    const content = r.msg.startsWith(MESSAGE_PREFIX) ? r.msg.slice(MESSAGE_PREFIX.length) : r.msg
    m.set(content, (m.get(content) ?? 0) + 1)
  }
  return m
}

/** Contents (from `expected`) whose line is missing or appears more than once. */
export function checkExactlyOnce(
  expected: Iterable<string>,
  counts: Map<string, number>,
): { missing: string[]; duplicated: string[] } {
  const missing: string[] = []
  const duplicated: string[] = []
  for (const c of expected) {
    const n = counts.get(c) ?? 0
    if (n === 0) missing.push(c)
    else if (n > 1) duplicated.push(c)
  }
  return { missing, duplicated }
}

export interface Tmpfs {
  dir: string
  /** Fill all free space with a filler file (ENOSPC from then on). */
  fill(): void
  /** Delete the filler: space is back. */
  free(): void
  unmount(): void
}

/**
 * Mount a tmpfs of `size` bytes in a fresh temp dir, or return undefined (the caller skips)
 * when mounting is not permitted (not root, no CAP_SYS_ADMIN, no tmpfs).
 */
export function mountTmpfs(size: number): Tmpfs | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'wirelog-tmpfs-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], {
      stdio: 'ignore',
      timeout: 5000,
    })
  } catch {
    rmSync(dir, { recursive: true, force: true })
    return undefined
  }
  const filler = join(dir, 'filler')
  return {
    dir,
    fill: () => {
      // dd stops at ENOSPC (and exits non-zero): the filesystem is then full.
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4096'], {
          stdio: 'ignore',
          timeout: 5000,
        })
      } catch {}
    },
    free: () => rmSync(filler, { force: true }),
    unmount: () => {
      try {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore', timeout: 5000 })
      } catch {}
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface SinkChild {
  /** The child's `RESULT` line, parsed. */
  result: Record<string, unknown>
  stderr: string
  exit: number | string
}

/**
 * Run test/sink-child.ts in `mode` (with `--expose-gc`) and wait for it to exit. With
 * `closeStdout`, the read end of the child's stdout is closed as soon as its first output
 * arrives, as `| head -1` would.
 */
export function runSinkChild(
  mode: string,
  o: { closeStdout?: boolean; timeoutMs?: number } = {},
): Promise<SinkChild> {
  const script = fileURLToPath(new URL('./sink-child.js', import.meta.url))
  const proc = spawn(process.execPath, ['--expose-gc', script, mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  proc.stdout!.once('data', () => {
    if (o.closeStdout) proc.stdout!.destroy()
  })
  if (!o.closeStdout) proc.stdout!.resume()
  const exited = new Promise<SinkChild>((resolve, reject) => {
    proc.on('exit', (code, signal) => {
      const m = /^RESULT (.*)$/m.exec(stderr)
      if (!m)
        return reject(
          new Error(`sink child ${mode} gave no result (exit ${code ?? signal}): ${stderr}`),
        )
      resolve({
        result: JSON.parse(m[1]!) as Record<string, unknown>,
        stderr,
        exit: code ?? signal ?? -1,
      })
    })
  })
  return within(exited, o.timeoutMs ?? 60_000, `sink child ${mode}`).finally(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
}
