#!/usr/bin/env node
/**
 * The `wirelog` command: parse, start, handle signals; exit codes 0 (clean shutdown),
 * 1 (runtime failure), 2 (bad usage).
 */
import { configFrom, helpText, version } from './cli-args.js'
import { isWorker, runPrimary, workerCount, workerReady, workerSetup } from './cluster.js'
import { type Config, ConfigError } from './config.js'
import { createServer, type WirelogServer } from './server.js'

const EXIT_USAGE = 2

async function main(argv: readonly string[] = process.argv.slice(2)): Promise<void> {
  let config: Config
  try {
    const r = configFrom(argv)
    if (r.parsed.help) {
      process.stdout.write(`${helpText()}\n`)
      return
    }
    if (r.parsed.version) {
      process.stdout.write(`${version()}\n`)
      return
    }
    config = r.config
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`wirelog: ${err.message}\n`)
      process.exitCode = EXIT_USAGE
      return
    }
    throw err
  }

  const workers = workerCount(config.workers)
  if (workers > 1 && !isWorker()) {
    process.exitCode = await runPrimary(config, workers, (line) =>
      process.stderr.write(`wirelog ${version()} ${line}\n`),
    )
    return
  }
  const { options, deps } = isWorker() ? workerSetup(config) : { options: config, deps: {} }
  const server = createServer(options, deps)
  let port: number
  try {
    port = (await server.listen()).port
  } catch (err) {
    process.stderr.write(`wirelog: cannot start: ${(err as Error).message}\n`)
    process.exitCode = 1
    // A worker's IPC channel would keep it alive.
    if (isWorker()) process.disconnect?.()
    return
  }
  const stop = installSignals(server)
  if (isWorker()) {
    workerReady(port, server.activityLog?.path, {
      shutdown: stop,
      reopen: () => server.activityLog?.reopen(),
    })
    return
  }
  const where = server.activityLog?.path ? `, logging to ${server.activityLog.path}` : ''
  process.stderr.write(`wirelog ${version()} listening on ws://${config.host}:${port}${where}\n`)
}

function installSignals(server: WirelogServer): (reason: string) => void {
  let stopping = false
  const shutdown = (reason: string): void => {
    if (stopping) return
    stopping = true
    server.close(reason).then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`wirelog: error during shutdown: ${String(err)}\n`)
        process.exit(1)
      },
    )
  }
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // A second signal while draining: leave now, but not before the log is on disk.
      server.activityLog?.flushSync()
      process.exit(1)
    }
    shutdown(signal)
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  process.on('SIGHUP', () => server.activityLog?.reopen())
  const fatal = (err: unknown): void => {
    process.stderr.write(
      `wirelog: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    )
    server.activityLog?.flushSync()
    process.exit(1)
  }
  process.on('uncaughtException', fatal)
  process.on('unhandledRejection', fatal)
  return shutdown
}

main().catch((err: unknown) => {
  process.stderr.write(`wirelog: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})
