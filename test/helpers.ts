/**
 * Shared test helpers: servers on port 0 with a private log directory, clients that
 * collect what they receive, and waiting on conditions instead of sleeping.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { createServer, type WirelogOptions, type WirelogServer } from '../src/index.js'

/** Repository root (tests run from `.build/test`). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** The built CLI, as `npm start` runs it. */
export const CLI = join(ROOT, 'dist', 'cli.js')

export function tempDir(prefix = 'wirelog-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export interface TestServer {
  server: WirelogServer
  url: string
  port: number
  dir: string
  logPath: string
  /** Lines of the activity log (whatever is on disk now). */
  lines(): string[]
  /** Close the server (flushes the log) and remove the temp dir. */
  stop(): Promise<void>
}

/** A server on 127.0.0.1, port 0, logging to a fresh temp dir. */
export async function startServer(options: WirelogOptions = {}): Promise<TestServer> {
  const dir = tempDir()
  const log = { dir, file: 'activity.log', flushInterval: 5, ...(options.log ?? {}) }
  const server = createServer({ host: '127.0.0.1', port: 0, ...options, log })
  const addr = await server.listen()
  const logPath = join(log.dir ?? dir, log.file ?? 'activity.log')
  return {
    server,
    url: `ws://127.0.0.1:${addr.port}`,
    port: addr.port,
    dir,
    logPath,
    lines: () => readLines(logPath),
    stop: async () => {
      await server.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * The complete lines of a log file. A last line without its newline is a write still in
 * progress (a reader can see a large append half done), not a line yet: it is left out.
 * Checks of the final file for a cut-off last line use `parseLog`'s `unterminated`.
 */
export function readLines(path: string): string[] {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    return []
  }
  const lines = text.split('\n')
  lines.pop()
  return lines.filter((l) => l.length > 0)
}

/** Poll `fn` until it returns a truthy value; fail after `timeoutMs` with `what`. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  what = 'condition',
  timeoutMs = 5000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let last: T | undefined
  for (;;) {
    last = await fn()
    if (last) return last as NonNullable<T>
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** Wait until the log file holds a line matching `re` (returns all matching lines). */
export function waitForLine(
  path: string,
  re: RegExp,
  count = 1,
  timeoutMs = 5000,
): Promise<string[]> {
  return waitFor(
    () => {
      const m = readLines(path).filter((l) => re.test(l))
      return m.length >= count ? m : undefined
    },
    `${count} log line(s) matching ${re} in ${path}`,
    timeoutMs,
  )
}

export interface TestClient {
  ws: WebSocket
  /** Messages received, text as string, binary as Buffer. */
  received: Array<string | Buffer>
  /** Resolves with [code, reason] when the socket closes. */
  closed: Promise<[number, string]>
  /** Wait until `n` messages have arrived. */
  waitMessages(n: number, timeoutMs?: number): Promise<Array<string | Buffer>>
}

export async function connect(
  url: string,
  opts: ConstructorParameters<typeof WebSocket>[2] = {},
): Promise<TestClient> {
  const ws = new WebSocket(url, opts)
  const received: Array<string | Buffer> = []
  const waiters: Array<() => void> = []
  ws.on('message', (data: Buffer, binary: boolean) => {
    received.push(binary ? data : data.toString('utf8'))
    for (const w of waiters.splice(0)) w()
  })
  const closed = new Promise<[number, string]>((resolve) => {
    ws.on('close', (code, reason) => resolve([code, reason.toString()]))
  })
  ws.on('error', () => {})
  await once(ws, 'open')
  return {
    ws,
    received,
    closed,
    waitMessages: (n, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (received.length >= n) {
            clearTimeout(t)
            resolve(received)
          } else waiters.push(check)
        }
        const t = setTimeout(
          () => reject(new Error(`timed out waiting for ${n} messages (got ${received.length})`)),
          timeoutMs,
        )
        check()
      }),
  }
}

export interface Child {
  proc: ChildProcess
  stdout(): string
  stderr(): string
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>
}

/** Run the CLI as a real child process. */
export function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Child {
  const proc = spawn(process.execPath, [CLI, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
  })
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
  })
  const exited = new Promise<number | string>((resolve) => {
    proc.on('exit', (code, signal) => resolve(code ?? signal ?? -1))
  })
  return { proc, stdout: () => out, stderr: () => err, exited }
}

/** Start the CLI on port 0 and wait for its "listening on" line; returns the port. */
export async function startCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<Child & { port: number }> {
  const child = runCli(['--host', '127.0.0.1', '--port', '0', ...args], opts)
  const m = await waitFor(
    () => /listening on ws:\/\/[^:]+:(\d+)/.exec(child.stderr()),
    'CLI to listen',
    10_000,
  )
  return { ...child, port: Number(m[1]) }
}

/** Attempt a WebSocket connection that the server should refuse; resolves with the HTTP status. */
export function expectRejected(
  url: string,
  opts: ConstructorParameters<typeof WebSocket>[2] = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts)
    ws.on('open', () => {
      ws.terminate()
      reject(new Error('connection was accepted'))
    })
    ws.on('unexpected-response', (_req, res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
      ws.terminate()
    })
    ws.on('error', () => {})
  })
}

/** Run `fn` against a started server, stopped afterwards whatever happens. */
export async function withServer(
  options: WirelogOptions,
  fn: (t: TestServer) => Promise<void>,
): Promise<void> {
  const t = await startServer(options)
  try {
    await fn(t)
  } finally {
    await t.stop()
  }
}
