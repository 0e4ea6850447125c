/**
 * `--workers N`: N processes sharing the port through node:cluster (the primary accepts and
 * hands connections out round-robin).
 *
 * - Broker between workers: Redis when configured (each worker is a node), else the
 *   in-host broker: the primary holds the topics, sessions and presence (`IpcBrokerHost`)
 *   and each worker reaches them over cluster IPC (`IpcBroker`).
 * - Activity log: one file per worker (`websocket_activity.log` → `websocket_activity.1.log`,
 *   `.2.log`, …; a restarted worker keeps its number), and the primary's own lines (workers
 *   started, exited, crashed) in the configured file. Per worker, because every message is
 *   a line: routing each one through the primary would put an IPC hop and one process's
 *   CPU on the per-message path, while a file per writer keeps lines whole, keeps each
 *   worker's durability (flush on shutdown, `sync`) and rotation, and merges by time (`sort`
 *   on the text timestamps, `jq -s 'sort_by(.time)'` on json).
 * - Shutdown: SIGTERM/SIGINT to the primary asks every worker to shut down gracefully
 *   (clients get 1001, logs are flushed), waits for them, then exits. A worker that dies
 *   otherwise is logged as crashed and restarted (with a growing delay if it keeps dying).
 */
import cluster, { type Worker } from 'node:cluster'
import { availableParallelism } from 'node:os'
import { IpcBroker, IpcBrokerHost, type Port } from './broker/ipc.js'
import { type Config, type WirelogOptions, WORKER_SLOT_ENV } from './config.js'
import { EventBus, emit } from './events.js'
import type { ServerMetrics } from './http/metrics.js'
import { ActivityLog } from './log/activity-log.js'
import type { ServerDeps } from './server.js'

/** Messages between the primary and its workers (besides the broker's). */
type Control =
  | { readonly wl: 'listening'; readonly port: number; readonly log: string | undefined }
  | { readonly wl: 'shutdown'; readonly reason: string }
  | { readonly wl: 'reopen' }
  // A scrape of /metrics on a worker: the primary collects every worker's registry, sums it.
  | { readonly wl: 'metrics'; readonly id: number }
  | {
      readonly wl: 'metrics-text'
      readonly id: number
      readonly text?: string
      readonly error?: string
    }
  | { readonly wl: 'metrics-collect'; readonly id: number }
  | {
      readonly wl: 'metrics-json'
      readonly id: number
      readonly metrics?: unknown[]
      readonly error?: string
    }

/** How long the primary waits for the workers' registries for one scrape. */
const METRICS_COLLECT_MS = 2000

const SLOT_ENV = WORKER_SLOT_ENV

/** How many workers `workers` asks for. */
export function workerCount(workers: Config['workers']): number {
  return workers === 'auto' ? availableParallelism() : workers
}

/** `websocket_activity.log` → `websocket_activity.3.log` (`file` → `file.3`). */
export function workerLogFile(file: string, slot: number): string {
  const dot = file.lastIndexOf('.')
  return dot > 0 ? `${file.slice(0, dot)}.${slot}${file.slice(dot)}` : `${file}.${slot}`
}

export function isWorker(): boolean {
  return cluster.isWorker && process.env[SLOT_ENV] !== undefined
}

/** In a worker: its options (its own log file) and deps (the in-host broker when not Redis). */
export function workerSetup(config: Config): { options: WirelogOptions; deps: ServerDeps } {
  const slot = Number(process.env[SLOT_ENV])
  const options = {
    ...config,
    workers: 1,
    log: { ...config.log, file: workerLogFile(config.log.file, slot) },
  } as WirelogOptions
  const deps: ServerDeps = {
    ...(config.broker.type === 'memory'
      ? { broker: new IpcBroker(process as unknown as Port) }
      : {}),
    ...(config.metrics ? { metricsText: askPrimaryForMetrics } : {}),
  }
  return { options, deps }
}

let metricsAsked = 0
let metricsListening = false
const metricsWaiting = new Map<number, { resolve(text: string): void; reject(e: Error): void }>()

/** In a worker: the /metrics text of all workers, summed by the primary. */
function askPrimaryForMetrics(): Promise<string> {
  if (!metricsListening) {
    metricsListening = true
    process.on('message', (m: unknown) => {
      const c = m as Control
      if (c?.wl !== 'metrics-text') return
      const w = metricsWaiting.get(c.id)
      metricsWaiting.delete(c.id)
      if (c.error !== undefined) w?.reject(new Error(c.error))
      else w?.resolve(c.text ?? '')
    })
  }
  const id = ++metricsAsked
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      metricsWaiting.delete(id)
      reject(new Error('the primary did not answer with the metrics in time'))
    }, METRICS_COLLECT_MS * 2)
    metricsWaiting.set(id, {
      resolve: (t) => {
        clearTimeout(timer)
        resolve(t)
      },
      reject: (e) => {
        clearTimeout(timer)
        reject(e)
      },
    })
    process.send?.({ wl: 'metrics', id } satisfies Control)
  })
}

/** In a worker: tell the primary we listen; follow its shutdown and reopen requests. */
export function workerReady(
  port: number,
  log: string | undefined,
  on: { shutdown(reason: string): void; reopen(): void },
  metrics?: ServerMetrics,
): void {
  process.send?.({ wl: 'listening', port, log } satisfies Control)
  process.on('message', (m: unknown) => {
    const c = m as Control
    if (c?.wl === 'shutdown') on.shutdown(c.reason)
    else if (c?.wl === 'reopen') on.reopen()
    else if (c?.wl === 'metrics-collect') void collectFor(c.id, metrics)
  })
  // The primary is gone (killed): nobody hands us connections any more.
  process.on('disconnect', () => on.shutdown('primary process gone'))
}

/** In a worker: this worker's registry as JSON, for the primary to sum. */
async function collectFor(id: number, metrics: ServerMetrics | undefined): Promise<void> {
  let reply: Control
  try {
    if (metrics === undefined) throw new Error('metrics are off')
    await metrics.load()
    reply = { wl: 'metrics-json', id, metrics: await metrics.registry!.getMetricsAsJSON() }
  } catch (err) {
    reply = { wl: 'metrics-json', id, error: (err as Error).message }
  }
  try {
    process.send?.(reply)
  } catch {}
}

/** In the primary: sum the registries of the live workers (those that answer in time). */
async function clusterMetrics(slots: readonly Slot[], id: number): Promise<string> {
  const mod = await import('prom-client')
  const prom = ((mod as { default?: typeof mod }).default ?? mod) as typeof mod
  const live = slots.flatMap((s) => (s.worker?.isConnected() ? [s.worker] : []))
  const answers = await Promise.all(
    live.map(
      (w) =>
        new Promise<unknown[] | undefined>((resolve) => {
          const done = (v: unknown[] | undefined): void => {
            clearTimeout(timer)
            w.off('message', onMessage)
            resolve(v)
          }
          const onMessage = (m: unknown): void => {
            const c = m as Control
            if (c?.wl === 'metrics-json' && c.id === id) done(c.metrics)
          }
          const timer = setTimeout(() => done(undefined), METRICS_COLLECT_MS)
          w.on('message', onMessage)
          w.send({ wl: 'metrics-collect', id } satisfies Control, (err) => {
            if (err) done(undefined)
          })
        }),
    ),
  )
  const got = answers.filter((a): a is unknown[] => a !== undefined)
  if (got.length === 0) throw new Error('no worker answered with its metrics')
  return prom.AggregatorRegistry.aggregate(
    got as Parameters<typeof prom.AggregatorRegistry.aggregate>[0],
  ).metrics()
}

interface Slot {
  readonly n: number
  worker: Worker | undefined
  restarts: number
  startedAt: number
  listening: boolean
}

/**
 * Run the primary: fork `count` workers, log their lives, restart crashed ones, shut them
 * all down on SIGTERM/SIGINT. Resolves with the exit code once everything is down.
 */
export async function runPrimary(
  config: Config,
  count: number,
  say: (line: string) => void,
): Promise<number> {
  const events = new EventBus()
  const log = config.log.enabled || config.log.stdout ? new ActivityLog(config.log) : undefined
  log?.attach(events)
  await log?.open()
  const host =
    config.broker.type === 'memory'
      ? new IpcBrokerHost({
          historySize: config.pubsub.historySize,
          historyTtl: config.pubsub.historyTtl * 1000,
          historyTopics: config.pubsub.historyTopics,
        })
      : undefined
  cluster.setupPrimary({ serialization: 'advanced' })
  const slots: Slot[] = Array.from({ length: count }, (_, i) => ({
    n: i + 1,
    worker: undefined,
    restarts: 0,
    startedAt: 0,
    listening: false,
  }))
  let stopping = false
  let failed = false
  let announced = false
  const logFiles: string[] = []
  let resolveDone!: () => void
  const allDown = new Promise<void>((r) => {
    resolveDone = r
  })

  let metricsRound = 0
  const fork = (slot: Slot): void => {
    const w = cluster.fork({ [SLOT_ENV]: String(slot.n) })
    slot.worker = w
    slot.startedAt = Date.now()
    slot.listening = false
    host?.attach(w as unknown as Port)
    // A send to a worker that has just died (a broker push, a control message) fails with
    // ERR_IPC_CHANNEL_CLOSED as an 'error' event: its 'exit' below handles the loss.
    w.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ERR_IPC_CHANNEL_CLOSED')
        process.emitWarning(`wirelog: worker ${slot.n}: ${err.message}`, 'WirelogWarning')
    })
    emit(events, 'worker.started', {
      worker: slot.n,
      pid: w.process.pid ?? 0,
      restarts: slot.restarts,
    })
    w.on('message', (m: unknown) => {
      const c = m as Control
      if (c?.wl === 'metrics') {
        const id = ++metricsRound
        void clusterMetrics(slots, id).then(
          (text) => w.send({ wl: 'metrics-text', id: c.id, text } satisfies Control, () => {}),
          (err: Error) =>
            w.send(
              { wl: 'metrics-text', id: c.id, error: err.message } satisfies Control,
              () => {},
            ),
        )
        return
      }
      if (c?.wl !== 'listening') return
      slot.listening = true
      if (c.log) logFiles[slot.n - 1] = c.log
      if (!announced && slots.every((s) => s.listening)) {
        announced = true
        const files = logFiles.filter(Boolean)
        say(
          `listening on ${config.tls.cert ? 'wss' : 'ws'}://${config.host}:${c.port} with ${count} workers${files.length ? `, logging to ${files.join(', ')}` : ''}`,
        )
      }
    })
    w.on('exit', (code, signal) => {
      void host?.detach(w as unknown as Port)
      const crashed = !stopping
      emit(events, 'worker.exited', {
        worker: slot.n,
        pid: w.process.pid ?? 0,
        code: code ?? undefined,
        signal: signal ?? undefined,
        crashed,
      })
      slot.worker = undefined
      if (stopping) {
        if (code !== 0) failed = true
        if (slots.every((s) => s.worker === undefined)) resolveDone()
        return
      }
      if (!slot.listening && !announced) {
        // A worker that cannot even start (bad config, port taken) will not do better.
        failed = true
        void shutdown('a worker failed to start')
        return
      }
      // Crashed: restart, waiting longer each time it dies soon after starting.
      const quick = Date.now() - slot.startedAt < 5000
      const delay = quick ? Math.min(5000, 100 * 2 ** slot.restarts) : 100
      slot.restarts++
      setTimeout(() => {
        if (!stopping) fork(slot)
      }, delay).unref()
    })
  }

  const shutdown = async (reason: string): Promise<void> => {
    if (stopping) return
    stopping = true
    const live = slots.filter((s) => s.worker !== undefined)
    if (live.length === 0) resolveDone()
    for (const s of live) {
      try {
        s.worker!.send({ wl: 'shutdown', reason } satisfies Control)
      } catch {}
    }
    // Workers drain within shutdownTimeout; past it (and a margin), they are killed.
    const grace = setTimeout(() => {
      for (const s of slots) s.worker?.process.kill('SIGKILL')
    }, config.shutdownTimeout + 5000)
    grace.unref()
    await allDown
    clearTimeout(grace)
  }

  let signals = 0
  const onSignal = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      // A second signal: stop now.
      for (const s of slots) s.worker?.process.kill('SIGKILL')
      log?.flushSync()
      process.exit(1)
    }
    void shutdown(signal)
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  process.on('SIGHUP', () => {
    log?.reopen()
    for (const s of slots) s.worker?.send({ wl: 'reopen' } satisfies Control)
  })

  for (const s of slots) fork(s)
  await allDown
  await log?.close()
  return failed ? 1 : 0
}
