/**
 * The measurements, each against one running server process: closed-loop throughput (with
 * server CPU per message), open-loop latency at fixed rates, and idle connections (RSS per
 * connection, accept rate). Load comes from separate generator processes; the server's CPU
 * and memory are read from /proc around the measurement window.
 *
 * wirelog runs as users run it: the real CLI (`node dist/cli.js` and flags), with its defaults
 * (heartbeat, connection caps, outbound limits) but for the bind address, port and log
 * location. The reference servers (raw ws, raw ws corked, uWebSockets.js) run in server.ts.
 */
import { execFileSync } from 'node:child_process'
import { createReadStream, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { get } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { Child, cpuSeconds, rssBytes, scriptArgs } from './proc.js'
import type {
  ClientKind,
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
  /** The wirelog CLI (dist/cli.js). */
  cli: string
  /** CPU for the server (undefined: not pinned). */
  serverCpu: number | undefined
  /** CPUs for generators, used round-robin (empty: not pinned). */
  generatorCpus: number[]
  /** Generator processes for load phases. */
  generators: number
}

const START_TIMEOUT_MS = 15_000
const SETTLE_TIMEOUT_MS = 60_000
const CLOSE_TIMEOUT_MS = 120_000
const LOG_FILE = 'activity.log'
/** wirelog's banner on stderr once it listens (src/cli.ts). */
const BANNER = /^wirelog \S+ listening on ws:\/\/\S+?:(\d+)/

const serverDirs = new Set<string>()

/** Remove the log dirs of servers that could not clean up after themselves (killed, crashed). */
export function removeServerDirs(): void {
  for (const dir of serverDirs) rmSync(dir, { recursive: true, force: true })
  serverDirs.clear()
}

/** One server process under test, whichever kind. */
export interface ServerUnderTest {
  readonly child: Child<ServerReport>
  readonly port: number
  readonly pid: number
  readonly url: string
  /** Full GC, then the RSS from /proc. */
  gcRss(): Promise<{ rss: number; heapUsed: number }>
  /** Wait until the server counts `n` open connections. */
  waitClients(n: number, timeoutMs?: number): Promise<number>
  /** Shut it down; for wirelog, how it exited and what its log holds. */
  close(): Promise<LogReport | null>
  /** Kill it (if still running) and remove what it left. */
  kill(): void
}

export interface StartOptions {
  name: string
  config: ServerConfig
  place: Placement
  nofile: number
  /** More node flags (e.g. --cpu-prof). */
  nodeFlags?: string[]
}

export function startServer(o: StartOptions): Promise<ServerUnderTest> {
  return o.config.kind === 'wirelog' ? WirelogProcess.start(o) : ReferenceServer.start(o)
}

/** A reference server (server.ts), driven over its stdin. */
class ReferenceServer implements ServerUnderTest {
  readonly child: Child<ServerReport>
  readonly port: number

  private constructor(child: Child<ServerReport>, port: number) {
    this.child = child
    this.port = port
  }

  static async start(o: StartOptions): Promise<ReferenceServer> {
    const child = new Child<ServerReport>({
      name: `server ${o.name}`,
      args: scriptArgs(join(o.place.dir, 'server.js'), o.config),
      cpu: o.place.serverCpu,
      nofile: o.nofile,
      // --expose-gc: RSS is read after a forced GC, so garbage does not pass for connection state.
      nodeFlags: ['--expose-gc', ...(o.nodeFlags ?? [])],
    })
    try {
      const ready = await child.next('ready', START_TIMEOUT_MS)
      return new ReferenceServer(child, ready.port)
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

  async gcRss(): Promise<{ rss: number; heapUsed: number }> {
    this.child.send({ cmd: 'gc' })
    const r = await this.child.next('gc', START_TIMEOUT_MS)
    return { rss: rssBytes(this.pid), heapUsed: r.heapUsed }
  }

  /** Waits on the server's own connect/disconnect events. */
  async waitClients(n: number, timeoutMs = SETTLE_TIMEOUT_MS): Promise<number> {
    this.child.send({ cmd: 'waitClients', n, timeoutMs })
    const r = await this.child.next('clients', timeoutMs + START_TIMEOUT_MS)
    if (!r.ok)
      throw new Error(`server counted ${r.n} connections, expected ${n}, after ${timeoutMs} ms`)
    return r.n
  }

  async close(): Promise<LogReport | null> {
    this.child.send({ cmd: 'close' })
    await this.child.next('closed', CLOSE_TIMEOUT_MS)
    await this.child.stop()
    return null
  }

  kill(): void {
    this.child.kill()
  }
}

/**
 * wirelog, the real CLI, with hook.ts preloaded (a forced GC on SIGUSR2, an end of its own).
 * Its port comes from its listening banner, its connection count from GET /health, and its
 * shutdown is SIGTERM, after which its log (in a temp dir) is counted and removed.
 */
class WirelogProcess implements ServerUnderTest {
  readonly child: Child<ServerReport>
  readonly port: number
  readonly #dir: string

  private constructor(child: Child<ServerReport>, port: number, dir: string) {
    this.child = child
    this.port = port
    this.#dir = dir
  }

  static async start(o: StartOptions): Promise<WirelogProcess> {
    const c = o.config
    const dir = mkdtempSync(join(tmpdir(), 'wirelog-bench-'))
    serverDirs.add(dir)
    const flags = ['--host', '127.0.0.1', '--port', '0', '--log-dir', dir, '--log-file', LOG_FILE]
    flags.push('--log-format', c.format)
    if (!c.logging) flags.push('--no-log')
    if (c.sync) flags.push('--log-sync')
    if (c.heartbeat !== undefined) flags.push('--timeout', String(c.heartbeat))
    flags.push(...(c.extraFlags ?? []))
    // The CLI's own defaults, not whatever WIRELOG_* this shell happens to set.
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('WIRELOG_')) env[k] = v
    env.BENCH_LIFETIME_MS = String(c.maxLifetimeMs)
    const child = new Child<ServerReport>({
      name: `server ${o.name}`,
      args: [o.place.cli, ...flags],
      cpu: o.place.serverCpu,
      nofile: o.nofile,
      nodeFlags: [
        '--expose-gc',
        '--import',
        pathToFileURL(join(o.place.dir, 'hook.js')).href,
        ...(o.nodeFlags ?? []),
      ],
      env,
    })
    try {
      const m = await child.stderrMatch(BANNER, START_TIMEOUT_MS)
      return new WirelogProcess(child, Number(m[1]), dir)
    } catch (err) {
      child.kill()
      rmSync(dir, { recursive: true, force: true })
      serverDirs.delete(dir)
      throw err
    }
  }

  get pid(): number {
    return this.child.pid
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`
  }

  async gcRss(): Promise<{ rss: number; heapUsed: number }> {
    this.child.signal('SIGUSR2')
    const r = await this.child.next('gc', START_TIMEOUT_MS)
    return { rss: rssBytes(this.pid), heapUsed: r.heapUsed }
  }

  /** Polls GET /health (wirelog's own count of open connections). */
  async waitClients(n: number, timeoutMs = SETTLE_TIMEOUT_MS): Promise<number> {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const got = await this.#clients()
      if (got === n) return n
      if (performance.now() > deadline)
        throw new Error(`server counted ${got} connections, expected ${n}, after ${timeoutMs} ms`)
      await sleep(got > n ? 10 : 25)
    }
  }

  #clients(): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = get(
        { host: '127.0.0.1', port: this.port, path: '/health', agent: false, timeout: 10_000 },
        (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (d: string) => {
            body += d
          })
          res.on('end', () => {
            try {
              resolve((JSON.parse(body) as { clients: number }).clients)
            } catch {
              reject(
                new Error(`GET /health: ${res.statusCode} ${JSON.stringify(body.slice(0, 200))}`),
              )
            }
          })
        },
      )
      req.on('timeout', () => req.destroy(new Error('GET /health timed out')))
      req.on('error', reject)
    })
  }

  async close(): Promise<LogReport> {
    this.child.signal('SIGTERM')
    const exit = await Promise.race([
      this.child.exited,
      sleep(CLOSE_TIMEOUT_MS, null, { ref: false }),
    ])
    if (exit === null) {
      this.child.kill()
      throw new Error(`wirelog did not exit within ${CLOSE_TIMEOUT_MS} ms of SIGTERM`)
    }
    let fileLines = 0
    let fileBytes = 0
    for (const f of readdirSync(this.#dir).filter((x) => x.startsWith(LOG_FILE))) {
      fileLines += await countLines(join(this.#dir, f))
      fileBytes += statSync(join(this.#dir, f)).size
    }
    this.#removeDir()
    return {
      exitCode: exit,
      fileLines,
      fileBytes,
      stderr: this.child.stderrLines.filter((l) => !BANNER.test(l)),
    }
  }

  kill(): void {
    this.child.kill()
    this.#removeDir()
  }

  #removeDir(): void {
    rmSync(this.#dir, { recursive: true, force: true })
    serverDirs.delete(this.#dir)
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
          args: scriptArgs(join(place.dir, 'loadgen.js'), {
            index: i,
            hardLimitMs,
          } satisfies LoadgenConfig),
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
  server: () => Promise<ServerUnderTest>,
  gens: () => Promise<Generators>,
): Promise<[ServerUnderTest, Generators]> {
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
  client: ClientKind
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
  client: ClientKind
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
  /**
   * Busiest generator's CPU use in the window, % of one core (near 100 in closed loop:
   * generator-bound; in open loop the frames client spins to keep its schedule).
   */
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
  server: ServerUnderTest,
  gens: Generators,
  shape: LoadShape,
): Promise<LoadResult> {
  const n = Math.max(1, Math.min(gens.count, shape.connections))
  const used = gens.children.slice(0, n)
  const conns = split(shape.connections, n)
  const rates = conns.map((c) => (shape.rate * c) / shape.connections)
  const phases: PhaseConfig[] = conns.map((c, i) => ({
    mode: shape.mode,
    client: shape.client,
    url: server.url,
    connections: c,
    pipeline: shape.pipeline,
    size: shape.size,
    rate: rates[i]!,
    localAddresses: [],
    concurrency: shape.concurrency,
    // Open loop: room for 1.5× the expected window, so a late mark cannot overflow it;
    // closed loop (frames client): for a window at 600,000 msg/s.
    maxSamples:
      shape.mode === 'open'
        ? Math.ceil(rates[i]! * shape.durationS * 1.5) + 1000
        : shape.client === 'frames'
          ? Math.ceil(Math.min(8e6, shape.durationS * 6e5))
          : 0,
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
    client: shape.client,
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
  server: ServerUnderTest,
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
  server: ServerUnderTest,
  gens: Generators,
  shape: IdleShape,
): Promise<IdleResult> {
  const phases = (n: number, groups: string[][]): PhaseConfig[] =>
    split(n, groups.length).map((c, i) => ({
      mode: 'idle',
      client: 'ws',
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
