/**
 * Start-up figures of the CLI, run after run (not pinned: what a user's shell sees), each the
 * median of several runs, with bare `node -e 0` as the floor every node program pays:
 *
 * - `wirelog --version`: spawn to exit;
 * - exec to listening: spawn `node dist/cli.js --host 127.0.0.1 --port 0 --log-dir <tmp>` to
 *   its listening banner on stderr (printed once the port is bound);
 * - exec to first echo: the same, until a WebSocket client connected after the banner has its
 *   first echo back (the first connection runs code paths the banner does not).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { WebSocket } from 'ws'
import { type Summary, summarize } from './stats.js'

const TIMEOUT_MS = 20_000

export interface StartupFigure extends Summary {
  /** Every run, ms. */
  runs: number[]
}

export interface StartupResult {
  nodeE0: StartupFigure | undefined
  version: StartupFigure | undefined
  listening: StartupFigure | undefined
  firstEcho: StartupFigure | undefined
  errors: string[]
}

/** The CLI's own defaults, not whatever WIRELOG_* this shell happens to set. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WIRELOG_')) env[k] = v
  return env
}

/** Wall ms from spawn to exit (which must be 0). */
function timeExit(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(process.execPath, args, { stdio: 'ignore', env: cleanEnv() })
    const timer = setTimeout(() => child.kill('SIGKILL'), TIMEOUT_MS)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const ms = performance.now() - t0
      if (code === 0) resolve(ms)
      else reject(new Error(`node ${args.join(' ')} exited ${code ?? signal}`))
    })
  })
}

/** Spawn the server; ms to its banner and to the first echo; then SIGTERM and wait for exit 0. */
function timeListen(cli: string): Promise<{ listening: number; firstEcho: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'wirelog-bench-start-'))
  return new Promise<{ listening: number; firstEcho: number }>((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(
      process.execPath,
      [cli, '--host', '127.0.0.1', '--port', '0', '--log-dir', dir],
      { stdio: ['ignore', 'ignore', 'pipe'], env: cleanEnv() },
    )
    let listening = Number.NaN
    let firstEcho = Number.NaN
    let stderr = ''
    let failure: Error | undefined
    const fail = (err: Error): void => {
      failure ??= err
      child.kill('SIGKILL')
    }
    const timer = setTimeout(() => fail(new Error('no echo within 20 s')), TIMEOUT_MS)
    child.on('error', fail)
    child.stderr!.setEncoding('utf8')
    child.stderr!.on('data', (d: string) => {
      stderr += d
      if (!Number.isNaN(listening)) return
      const m = /listening on ws:\/\/\S+?:(\d+)/.exec(stderr)
      if (!m) return
      listening = performance.now() - t0
      const ws = new WebSocket(`ws://127.0.0.1:${m[1]}`)
      ws.on('error', (err) => fail(err))
      ws.on('open', () => ws.send('hello'))
      ws.on('message', (data) => {
        firstEcho = performance.now() - t0
        if (String(data) !== 'Echo: hello') fail(new Error(`echo ${JSON.stringify(String(data))}`))
        ws.terminate()
        child.kill('SIGTERM')
      })
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (failure) reject(failure)
      else if (code !== 0 || Number.isNaN(firstEcho))
        reject(new Error(`wirelog exited ${code ?? signal}: ${stderr.trim().slice(-300)}`))
      else resolve({ listening, firstEcho })
    })
  }).finally(() => rmSync(dir, { recursive: true, force: true }))
}

function figure(runs: number[]): StartupFigure | undefined {
  const s = summarize(runs)
  return s ? { ...s, runs } : undefined
}

/** `runs` of each, interleaved (node -e 0, --version, listen, node -e 0, …). */
export async function measureStartup(
  cli: string,
  runs: number,
  progress: (done: number) => void,
): Promise<StartupResult> {
  const e0: number[] = []
  const version: number[] = []
  const listening: number[] = []
  const firstEcho: number[] = []
  const errors: string[] = []
  const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn()
    } catch (err) {
      if (errors.length < 10) errors.push(`${what}: ${(err as Error).message}`)
    }
  }
  for (let i = 0; i < runs; i++) {
    await attempt('node -e 0', async () => {
      e0.push(await timeExit(['-e', '0']))
    })
    await attempt('wirelog --version', async () => {
      version.push(await timeExit([cli, '--version']))
    })
    await attempt('wirelog start', async () => {
      const r = await timeListen(cli)
      listening.push(r.listening)
      firstEcho.push(r.firstEcho)
    })
    progress(i + 1)
  }
  return {
    nodeE0: figure(e0),
    version: figure(version),
    listening: figure(listening),
    firstEcho: figure(firstEcho),
    errors,
  }
}
