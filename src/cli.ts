#!/usr/bin/env node
/**
 * The `wirelog` command: parse, start, handle signals; exit codes 0 (clean shutdown),
 * 1 (runtime failure), 2 (bad usage).
 *
 * Only Node built-ins are imported up front: argument parsing (zod, the options table) and
 * the server (ws, the log) are loaded when needed, so `--version` starts in the time Node
 * itself takes.
 */
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import type { WirelogServer } from './server.js'

const EXIT_RUNTIME = 1
const EXIT_USAGE = 2

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
  return pkg.version
}

const say = (line: string): void => {
  process.stderr.write(`wirelog: ${line}\n`)
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`

async function main(argv: readonly string[]): Promise<void> {
  if (argv.length > 0 && argv.every((a) => a === '-v' || a === '--version')) {
    process.stdout.write(`${version()}\n`)
    return
  }
  const { isTool, TOOLS } = await import('./tools/index.js')
  if (isTool(argv[0])) {
    const tool = await TOOLS[argv[0]]!.load()
    process.exitCode = await tool.run(argv.slice(1))
    return
  }
  const cli = await import('./cli-args.js')
  const { ConfigError, WORKER_SLOT_ENV } = await import('./config.js')
  let config: import('./config.js').Config
  try {
    const parsed = cli.parseArgs(argv)
    if (parsed.help) {
      process.stdout.write(`${cli.helpText()}\n`)
      return
    }
    if (parsed.version) {
      process.stdout.write(`${version()}\n`)
      return
    }
    for (const w of cli.envWarnings()) say(`warning: ${w}`)
    config = cli.loadConfig(parsed)
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const p of err.problems) say(p)
      process.exitCode = EXIT_USAGE
      return
    }
    throw err
  }
  // node:cluster and the worker code cost start-up time: loaded only with --workers or in a
  // worker (whose primary sets WIRELOG_WORKER_SLOT); a single process calls just these two.
  const cluster =
    config.workers === 1 && process.env[WORKER_SLOT_ENV] === undefined
      ? ({
          workerCount: () => 1,
          isWorker: () => false,
        } as unknown as typeof import('./cluster.js'))
      : await import('./cluster.js')
  const workers = cluster.workerCount(config.workers)
  if (workers > 1 && !cluster.isWorker()) {
    process.exitCode = await cluster.runPrimary(config, workers, (line) =>
      process.stderr.write(`wirelog ${version()} ${line}\n`),
    )
    return
  }
  const { options, deps } = cluster.isWorker()
    ? cluster.workerSetup(config)
    : { options: config, deps: {} }
  const { createServer } = await import('./server.js')
  const server = createServer(options, deps)
  let addr: AddressInfo
  try {
    addr = await server.listen()
  } catch (err) {
    say(`cannot start: ${describeError(err)}`)
    process.exitCode = EXIT_RUNTIME
    // A worker's IPC channel would keep it alive.
    if (cluster.isWorker()) process.disconnect?.()
    return
  }
  // Handlers first: whoever waits for the line below may signal at once.
  const stop = installSignals(server)
  if (cluster.isWorker()) {
    // The primary prints one line for all its workers.
    cluster.workerReady(
      addr.port,
      server.activityLog?.path,
      { shutdown: stop, reopen: () => reopen(server) },
      server.metrics,
    )
    return
  }
  const where = server.activityLog?.path ? `, logging to ${server.activityLog.path}` : ''
  const named = addr.address === config.host ? '' : ` (${config.host})`
  const tls = server.certificate ? `, TLS certificate ${server.certificate.fingerprint}` : ''
  process.stderr.write(
    `wirelog ${version()} listening on ${wsUrl(addr, server.certificate !== undefined)}${named}${where}${tls}\n`,
  )
}

/** `ws://127.0.0.1:8080`, `wss://[::1]:8080`. */
function wsUrl(addr: AddressInfo, tls: boolean): string {
  const host =
    addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address
  return `${tls ? 'wss' : 'ws'}://${host}:${addr.port}`
}

/** SIGHUP: reopen the log file, reload the TLS certificate (a failure is logged, the old one kept). */
function reopen(server: WirelogServer): void {
  server.activityLog?.reopen()
  server.reloadTls().catch((err: unknown) => say(`TLS reload failed: ${describeError(err)}`))
}

/**
 * One clear sentence per error: Node's system errors repeat their code (`listen EADDRINUSE:
 * address already in use 127.0.0.1:8080`); say what failed, why, and the code once.
 */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number; hostname?: string }
  const code = typeof e.code === 'string' ? e.code : undefined
  // Our own errors say everything in their message.
  if (code === undefined || code.startsWith('WIRELOG_')) return e.message
  const why = e.message.replace(new RegExp(`^(\\w+ )?${code}:? `), '').replace(/, \w+ '[^']*'$/, '')
  if (e.syscall === 'listen') {
    const at =
      e.address === undefined
        ? ''
        : ` on ${e.address.includes(':') ? `[${e.address}]` : e.address}${e.port === undefined ? '' : `:${e.port}`}`
    return `cannot listen${at}: ${why.replace(/ \S+:\d+$/, '')} (${code})`
  }
  if (e.syscall === 'getaddrinfo') return `cannot resolve host ${e.hostname ?? why} (${code})`
  // Someone else's message that names the code: keep it, but only one mention in a row.
  if (e.message.includes(code))
    return e.message.replace(new RegExp(`\\b${code}:?\\s+(?=${code}\\b)`, 'g'), '')
  return `${e.message} (${code})`
}

/** Signal handling; returns a graceful stop for other triggers (a worker told by its primary). */
function installSignals(server: WirelogServer): (reason: string) => void {
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) {
      // A second signal while draining: leave now, but not before the log says so and is on disk.
      const n = server.clients.size
      say(`forced exit, ${plural(n, 'client')} dropped`)
      server.log.warn(`forced exit: ${plural(n, 'client')} dropped`)
      server.activityLog?.flushSync()
      process.exit(EXIT_RUNTIME)
    }
    stopping = true
    const n = server.clients.size
    say(
      n > 0
        ? `draining ${plural(n, 'client')} (Ctrl-C again to force)`
        : 'shutting down (Ctrl-C again to force)',
    )
    server.close(signal).then(
      () => {
        say('stopped')
        process.exit(0)
      },
      (err: unknown) => {
        say(`error during shutdown: ${describeError(err)}`)
        process.exit(EXIT_RUNTIME)
      },
    )
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  process.on('SIGHUP', () => reopen(server))
  const fatal = (err: unknown): void => {
    say(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    server.activityLog?.flushSync()
    process.exit(EXIT_RUNTIME)
  }
  process.on('uncaughtException', fatal)
  process.on('unhandledRejection', fatal)
  return (reason) => {
    if (!stopping) stop(reason)
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  say(err instanceof Error ? err.message : String(err))
  process.exitCode = EXIT_RUNTIME
})
