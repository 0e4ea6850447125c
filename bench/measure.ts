/**
 * The measurements, each against one running server process: closed-loop throughput (with
 * server CPU per message), open-loop latency at a fixed rate, and idle connections (RSS per
 * connection, accept rate). Load comes from separate generator processes; the server's CPU
 * and memory are read from /proc around the measurement window.
 */
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Child, cpuSeconds, rssBytes } from './proc.js'
import type {
  ConnectReport,
  LoadgenConfig,
  LoadgenReport,
  LoadgenResult,
  LogReport,
  MarkReport,
  PhaseConfig,
  ServerConfig,
  ServerReport,
} from './protocol.js'
import type { Percentiles } from './stats.js'

/** Where children run and how. */
export interface Placement {
  /** Directory of the compiled bench scripts. */
  dir: string
  /** CPU for the server (undefined: not pinned). */
  serverCpu: number | undefined
  /** CPUs for generators, used round-robin (empty: not pinned). */
  generatorCpus: number[]
  /** Generator processes for load phases. */
  generators: number
}

const START_TIMEOUT_MS = 15_000
const SETTLE_TIMEOUT_MS = 60_000

const serverDirs = new Set<string>()

/** Remove the log dirs of servers that could not clean up after themselves (killed, crashed). */
export function removeServerDirs(): void {
  for (const dir of serverDirs) rmSync(dir, { recursive: true, force: true })
  serverDirs.clear()
}

/** One server process under test. */
export class ServerProcess {
  readonly child: Child<ServerReport>
  readonly port: number
  readonly #dir: string

  private constructor(child: Child<ServerReport>, port: number, dir: string) {
    this.child = child
    this.port = port
    this.#dir = dir
    serverDirs.add(dir)
  }

  /** `extraFlags`: more node flags (e.g. --cpu-prof). */
  static async start(
    name: string,
    config: ServerConfig,
    place: Placement,
    nofile: number,
    extraFlags: string[] = [],
  ): Promise<ServerProcess> {
    const child = new Child<ServerReport>({
      name: `server ${name}`,
      script: join(place.dir, 'server.js'),
      config,
      cpu: place.serverCpu,
      nofile,
      // --expose-gc: RSS is read after a forced GC, so garbage does not pass for connection state.
      nodeFlags: ['--expose-gc', ...extraFlags],
    })
    try {
      const ready = await child.next('ready', START_TIMEOUT_MS)
      return new ServerProcess(child, ready.port, ready.dir)
    } catch (err) {
      child.kill()
      throw err
    }
  }

  get pid(): number {
    return this.child.pid
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`
  }

  /** Full GC, then the RSS from /proc. */
  async gcRss(): Promise<{ rss: number; heapUsed: number }> {
    this.child.send({ cmd: 'gc' })
    const r = await this.child.next('gc', START_TIMEOUT_MS)
    return { rss: rssBytes(this.pid), heapUsed: r.heapUsed }
  }

  /** Wait (on the server's own connect/disconnect events) until it counts `n` connections. */
  async waitClients(n: number, timeoutMs = SETTLE_TIMEOUT_MS): Promise<number> {
    this.child.send({ cmd: 'waitClients', n, timeoutMs })
    const r = await this.child.next('clients', timeoutMs + START_TIMEOUT_MS)
    if (!r.ok)
      throw new Error(`server counted ${r.n} connections, expected ${n}, after ${timeoutMs} ms`)
    return r.n
  }

  /** Kill it (if still running) and remove its temp dir (it does so itself unless it crashed). */
  kill(): void {
    this.child.kill()
    rmSync(this.#dir, { recursive: true, force: true })
    serverDirs.delete(this.#dir)
  }

  /** Close (flushing its log) and report the log's line counts. */
  async close(): Promise<LogReport | null> {
    this.child.send({ cmd: 'close' })
    const r = await this.child.next('closed', 120_000)
    await this.child.stop()
    return r.log
  }
}

/** Load generator processes, started once per session and reused for every phase. */
export class Generators {
  readonly children: Child<LoadgenReport>[]

  private constructor(children: Child<LoadgenReport>[]) {
    this.children = children
  }

  /** Start `count` generators (pinned round-robin to the generator CPUs), each allowed `nofile` files. */
  static async start(
    place: Placement,
    count: number,
    nofile: number,
    hardLimitMs: number,
  ): Promise<Generators> {
    const children = Array.from(
      { length: count },
      (_x, i) =>
        new Child<LoadgenReport>({
          name: `loadgen ${i + 1}`,
          script: join(place.dir, 'loadgen.js'),
          config: { index: i, hardLimitMs } satisfies LoadgenConfig,
          cpu:
            place.generatorCpus.length > 0
              ? place.generatorCpus[i % place.generatorCpus.length]
              : undefined,
          nofile,
          // A larger young generation: fewer scavenges in the generator, the usual bottleneck.
          nodeFlags: ['--max-semi-space-size=32'],
        }),
    )
    try {
      await Promise.all(children.map((g) => g.next('hello', START_TIMEOUT_MS)))
    } catch (err) {
      for (const g of children) g.kill()
      throw err
    }
    return new Generators(children)
  }

  get count(): number {
    return this.children.length
  }

  /** Connect phase `phases[i]` on generator i (all at once); resolves when all are open. */
  async connect(phases: PhaseConfig[], timeoutMs = SETTLE_TIMEOUT_MS): Promise<ConnectReport[]> {
    const used = this.children.slice(0, phases.length)
    for (const [i, g] of used.entries()) g.send({ cmd: 'connect', phase: phases[i]! })
    return Promise.all(used.map((g) => g.next('ready', timeoutMs)))
  }

  /** Stop the phase on the first `n` generators; their results. */
  async stop(n: number): Promise<LoadgenResult[]> {
    const used = this.children.slice(0, n)
    for (const g of used) g.send({ cmd: 'stop' })
    const done = await Promise.all(used.map((g) => g.next('done', 120_000)))
    return done.map((d) => d.result)
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((g) => g.stop()))
  }

  kill(): void {
    for (const g of this.children) g.kill()
  }
}

/**
 * Start a server and its generators side by side (node's start-up is most of the wait);
 * if either fails, the other is not left running.
 */
export async function startPair(
  server: () => Promise<ServerProcess>,
  gens: () => Promise<Generators>,
): Promise<[ServerProcess, Generators]> {
  const [s, g] = await Promise.allSettled([server(), gens()])
  if (s.status === 'fulfilled' && g.status === 'fulfilled') return [s.value, g.value]
  if (s.status === 'fulfilled') s.value.kill()
  if (g.status === 'fulfilled') g.value.kill()
  throw s.status === 'rejected' ? s.reason : (g as PromiseRejectedResult).reason
}

/** Split `total` into `n` near-equal whole parts. */
function split(total: number, n: number): number[] {
  return Array.from({ length: n }, (_x, i) => Math.floor(total / n) + (i < total % n ? 1 : 0))
}

export interface LoadShape {
  mode: 'closed' | 'open'
  connections: number
  pipeline: number
  size: number
  /** Open loop: total messages/s. */
  rate: number
  warmupS: number
  durationS: number
  concurrency: number
}

export interface LoadResult {
  mode: 'closed' | 'open'
  size: number
  connections: number
  pipeline: number
  /** Open loop: the rate asked for. */
  targetRate: number
  /** Echoes verified per second in the window (the generators' own clocks). */
  msgsPerSec: number
  /** Server user+sys CPU per echoed message in the window, µs. */
  cpuUsPerMsg: number
  /** Server CPU use in the window, % of one core. */
  serverCpuPct: number
  /** Busiest generator's CPU use in the window, % of one core (near 100: generator-bound). */
  generatorCpuPct: number
  windowS: number
  windowEchoes: number
  latencyMs: Percentiles | undefined
  maxScheduleLagMs: number
  /** Totals over the whole phase (connect, warm-up, window, drain). */
  sent: number
  echoed: number
  generators: LoadgenResult[]
}

/** Warm up, then measure one window of closed- or open-loop load; verify every echo. */
export async function runLoad(
  server: ServerProcess,
  gens: Generators,
  shape: LoadShape,
): Promise<LoadResult> {
  const n = Math.max(1, Math.min(gens.count, shape.connections))
  const used = gens.children.slice(0, n)
  const conns = split(shape.connections, n)
  const rates = conns.map((c) => (shape.rate * c) / shape.connections)
  const phases: PhaseConfig[] = conns.map((c, i) => ({
    mode: shape.mode,
    url: server.url,
    connections: c,
    pipeline: shape.pipeline,
    size: shape.size,
    rate: rates[i]!,
    localAddresses: [],
    concurrency: shape.concurrency,
    // Room for 1.5× the expected window, so a late mark cannot overflow it.
    maxSamples: Math.ceil(rates[i]! * shape.durationS * 1.5) + 1000,
    // Far beyond what the phase can send (2M msg/s for its length plus a minute), yet finite.
    maxMessages: Math.ceil((shape.warmupS + shape.durationS + 60) * 2e6),
  }))
  const readies = await gens.connect(phases)
  const failed = readies.reduce((a, r) => a + r.failed, 0)
  if (failed > 0)
    throw new Error(
      `${failed} of ${shape.connections} connections failed: ${readies.find((r) => r.firstError)?.firstError}`,
    )
  await server.waitClients(shape.connections)

  for (const g of used) g.send({ cmd: 'start' })
  await sleep(shape.warmupS * 1000)
  const before = sample(server, used)
  const m0 = await mark(used)
  await sleep(shape.durationS * 1000)
  const after = sample(server, used)
  const m1 = await mark(used)
  const results = await gens.stop(n)
  // Every connection is gone on the server too before anything else is measured.
  await server.waitClients(0)

  let windowEchoes = 0
  let msgsPerSec = 0
  for (let i = 0; i < n; i++) {
    const d = m1[i]!.echoed - m0[i]!.echoed
    windowEchoes += d
    msgsPerSec += d / ((m1[i]!.t - m0[i]!.t) / 1000)
  }
  const wall = (after.t - before.t) / 1000
  const serverCpu = after.server - before.server
  const latencies = results.map((r) => r.latency).filter((l): l is Percentiles => l !== undefined)
  return {
    mode: shape.mode,
    size: shape.size,
    connections: shape.connections,
    pipeline: shape.mode === 'closed' ? shape.pipeline : 0,
    targetRate: shape.mode === 'open' ? shape.rate : 0,
    msgsPerSec,
    cpuUsPerMsg: windowEchoes > 0 ? (serverCpu * 1e6) / windowEchoes : Number.NaN,
    serverCpuPct: (serverCpu / wall) * 100,
    generatorCpuPct: Math.max(...after.gens.map((g, i) => ((g - before.gens[i]!) / wall) * 100)),
    windowS: wall,
    windowEchoes,
    // One generator is the usual open-loop case; with several, the worst one's figures.
    latencyMs: worst(latencies),
    maxScheduleLagMs: Math.max(...results.map((r) => r.maxScheduleLagMs)),
    sent: results.reduce((a, r) => a + r.sent, 0),
    echoed: results.reduce((a, r) => a + r.echoed, 0),
    generators: results,
  }
}

function worst(list: Percentiles[]): Percentiles | undefined {
  if (list.length === 0) return undefined
  return list.reduce((a, b) => (b.p99 > a.p99 ? b : a))
}

function sample(
  server: ServerProcess,
  gens: Child<LoadgenReport>[],
): { t: number; server: number; gens: number[] } {
  return {
    t: performance.now(),
    server: cpuSeconds(server.pid),
    gens: gens.map((g) => cpuSeconds(g.pid)),
  }
}

async function mark(gens: Child<LoadgenReport>[]): Promise<MarkReport[]> {
  for (const g of gens) g.send({ cmd: 'mark' })
  return Promise.all(gens.map((g) => g.next('mark', START_TIMEOUT_MS)))
}

export interface IdleShape {
  connections: number
  /** Connections opened and closed first, so the handshake path is compiled and the heap grown. */
  warmConnections: number
  concurrency: number
  /** Source addresses for each generator used (one entry per generator; [] = the kernel's choice). */
  addresses: string[][]
}

export interface IdleResult {
  connections: number
  /** Time from the connect command to the last connection open, ms. */
  connectMs: number
  acceptPerSec: number
  /** Server CPU per accepted connection (handshake + connect event/log line), µs. */
  cpuUsPerConn: number
  rssBefore: number
  rssAfter: number
  /** (RSS after − before) / connections, both after a forced GC, bytes. */
  rssPerConn: number
  heapPerConn: number
  generators: number
  failed: number
  firstError: string | undefined
}

/**
 * Open idle connections from `shape.addresses.length` generators at once, measure the
 * server's RSS and accept rate, close them. Failed connections are counted in the result
 * (the caller judges); the ones that opened are measured.
 */
export async function runIdle(
  server: ServerProcess,
  gens: Generators,
  shape: IdleShape,
): Promise<IdleResult> {
  const phases = (n: number, groups: string[][]): PhaseConfig[] =>
    split(n, groups.length).map((c, i) => ({
      mode: 'idle',
      url: server.url,
      connections: c,
      pipeline: 0,
      size: 1,
      rate: 0,
      localAddresses: groups[i]!,
      concurrency: shape.concurrency,
      maxSamples: 0,
      maxMessages: 0,
    }))
  if (shape.warmConnections > 0) {
    await gens.connect(phases(shape.warmConnections, [shape.addresses[0]!]))
    await server.waitClients(shape.warmConnections)
    await gens.stop(1)
    await server.waitClients(0)
  }
  const base = await server.gcRss()
  const cpu0 = cpuSeconds(server.pid)
  const t0 = performance.now()
  const readies = await gens.connect(phases(shape.connections, shape.addresses), 600_000)
  const ms = performance.now() - t0
  const connected = readies.reduce((a, r) => a + r.connected, 0)
  const failed = readies.reduce((a, r) => a + r.failed, 0)
  await server.waitClients(connected)
  const cpuS = cpuSeconds(server.pid) - cpu0
  const after = await server.gcRss()
  await gens.stop(shape.addresses.length)
  await server.waitClients(0, 120_000)
  return {
    connections: connected,
    connectMs: ms,
    acceptPerSec: connected / (ms / 1000),
    cpuUsPerConn: connected > 0 ? (cpuS * 1e6) / connected : Number.NaN,
    rssBefore: base.rss,
    rssAfter: after.rss,
    rssPerConn: connected > 0 ? (after.rss - base.rss) / connected : Number.NaN,
    heapPerConn: connected > 0 ? (after.heapUsed - base.heapUsed) / connected : Number.NaN,
    generators: shape.addresses.length,
    failed,
    firstError: readies.find((r) => r.firstError)?.firstError,
  }
}
/** The open-file limit a child gets when it asks for `want` (the hard limit may be lower). */
export function reachableNofile(want: number): number {
  try {
    const out = execFileSync(
      'bash',
      ['-c', `ulimit -n ${want} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ulimit -n`],
      {
        encoding: 'utf8',
      },
    )
    const n = out.trim() === 'unlimited' ? want : Number(out.trim())
    return Number.isFinite(n) ? n : 1024
  } catch {
    return 1024
  }
}
