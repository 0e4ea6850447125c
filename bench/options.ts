/**
 * What a bench run does: the servers compared, the profiles (`--quick`, `--smoke`,
 * `--scale`, default) and the flags that override them.
 */
import type { ClientKind, ServerConfig } from './protocol.js'

export interface ServerSpec {
  id: string
  /** What the tables say. */
  label: string
  config: Omit<ServerConfig, 'maxLifetimeMs' | 'heartbeat' | 'uwsDir' | 'extraFlags'>
}

const ref = (kind: ServerConfig['kind']): ServerSpec['config'] => ({
  kind,
  logging: false,
  format: 'text',
  sync: false,
})
const wirelog = (logging: boolean, format: 'text' | 'json' | 'plain', sync = false) => ({
  kind: 'wirelog' as const,
  logging,
  format,
  sync,
})

/** Every server the bench knows, in the order each round runs them. */
export const KNOWN: readonly ServerSpec[] = [
  { id: 'raw-ws-cork', label: 'raw ws, corked', config: ref('raw-ws-cork') },
  { id: 'raw-ws', label: 'raw ws', config: ref('raw-ws') },
  { id: 'uws', label: 'uWebSockets.js', config: ref('uws') },
  { id: 'off', label: 'wirelog, log off', config: wirelog(false, 'text') },
  { id: 'text', label: 'wirelog, text', config: wirelog(true, 'text') },
  { id: 'json', label: 'wirelog, json', config: wirelog(true, 'json') },
  { id: 'plain', label: 'wirelog, plain', config: wirelog(true, 'plain') },
  { id: 'sync', label: 'wirelog, text sync', config: wirelog(true, 'text', true) },
]

/** The smoke run leaves out uWebSockets.js (an install CI must not depend on) unless named. */
const SMOKE_SERVERS = KNOWN.filter((s) => s.id !== 'uws')

export type Profile = 'default' | 'quick' | 'smoke' | 'scale' | 'fanout'

export interface Options {
  profile: Profile
  servers: ServerSpec[]
  /** Whether `--servers` named them (a named uws that cannot load is still only skipped). */
  serversNamed: boolean
  rounds: number
  /** Seconds of load before each measurement window. */
  warmup: number
  /** Seconds of each measurement window. */
  duration: number
  /** Closed loop: connections and messages in flight per connection. */
  connections: number
  pipeline: number
  /** Closed-loop message sizes (bytes of payload, before the 6-byte echo prefix). */
  sizes: number[]
  /** Closed-loop clients: `frames` (server capacity) and/or `ws` (a realistic client). */
  clients: ClientKind[]
  /** Open loop: total messages/s of each step, over `latencyConnections`, `latencySize` bytes. */
  rates: number[]
  latencyConnections: number
  latencySize: number
  /** The client of the open-loop steps. */
  rateClient: ClientKind
  /** Idle connections for RSS/connection and accept rate; 0 skips that part. */
  idleConnections: number
  /** Handshakes in flight at once per generator. */
  connectConcurrency: number
  /** Scale mode: idle connections to one wirelog process. */
  scaleConnections: number
  /** Start-up figures: runs of each command (0 skips them). */
  startupRuns: number
  /** Load generator processes (default: one per CPU not used by the server, at most 4). */
  generators: number | undefined
  /** wirelog `--timeout` (heartbeat interval, s); undefined = wirelog's default (30 s). */
  heartbeat: number | undefined
  /** May the bench install uwebsockets into its cache when it is not there? */
  uwsInstall: boolean
  pin: boolean
  outDir: string
  /** Write a V8 CPU profile of every server process (skews the figures: for finding hot spots). */
  cpuProf: boolean
  /** Pub/sub sections (pubsub-bench.ts): fan-out subscriber counts ([] skips fan-out). */
  fanoutSubscribers: number[]
  /** Messages a resuming session missed (0 skips the resume figure). */
  resumeMissed: number
  /** Idle subscribed clients for the memory figure (0 skips it). */
  memoryClients: number
}

type Shape = Omit<
  Options,
  | 'profile'
  | 'servers'
  | 'serversNamed'
  | 'generators'
  | 'heartbeat'
  | 'uwsInstall'
  | 'pin'
  | 'outDir'
  | 'cpuProf'
  | 'clients'
  | 'rateClient'
>

const FULL: Shape = {
  rounds: 3,
  warmup: 0.5,
  duration: 2.5,
  connections: 32,
  pipeline: 16,
  sizes: [64, 4096],
  rates: [1000, 5000, 20_000, 50_000],
  latencyConnections: 10,
  latencySize: 64,
  idleConnections: 10_000,
  connectConcurrency: 200,
  scaleConnections: 100_000,
  startupRuns: 10,
  fanoutSubscribers: [1, 100, 10_000],
  resumeMissed: 1000,
  memoryClients: 5000,
}

const NO_PUBSUB = { fanoutSubscribers: [], resumeMissed: 0, memoryClients: 0 }

const PROFILES: Record<Profile, Shape> = {
  // About 15 minutes on a quiet machine: 8 servers × 3 rounds × ~35 s, plus start-up figures.
  default: FULL,
  // About 2 minutes: the same shape, short windows, 1,000 idle connections, 2 rounds.
  quick: {
    ...FULL,
    rounds: 2,
    warmup: 0.2,
    duration: 0.5,
    idleConnections: 1000,
    startupRuns: 5,
    memoryClients: 2000,
  },
  // CI: proves the harness works end to end (well under a minute); the figures mean little.
  smoke: {
    ...FULL,
    rounds: 1,
    warmup: 0.15,
    duration: 0.3,
    connections: 8,
    pipeline: 8,
    rates: [1000, 5000],
    latencyConnections: 4,
    idleConnections: 200,
    connectConcurrency: 50,
    startupRuns: 3,
    ...NO_PUBSUB,
  },
  scale: {
    ...FULL,
    rounds: 1,
    idleConnections: 0,
    connectConcurrency: 500,
    startupRuns: 0,
    ...NO_PUBSUB,
  },
  // Only the pub/sub sections, with the full run's shape.
  fanout: FULL,
}

const ids = (list: readonly ServerSpec[]): string => list.map((s) => s.id).join(',')

export const HELP = `npm run bench -- [flags]

Compares wirelog (the real CLI with its defaults: log off, text, json, plain, text sync) with
reference echo servers (raw ws corked as wirelog corks, raw ws, uWebSockets.js), each in its
own pinned process, interleaved over several rounds. Per server: capacity (msg/s and server
CPU per message at saturation, from the frames client), the same with ws clients, an
open-loop rate sweep (CPU per message and p50/p99/p99.9 round trips at each rate), idle
connections; plus start-up times of the CLI.

Profiles:
  (none)                 full run, ~15 min: 3 rounds, 2.5 s windows, 10,000 idle connections
  --quick                ~2 min: 2 rounds, 0.5 s windows, 1,000 idle connections
  --smoke                CI check of the harness (< 1 min): 1 round, no uWebSockets.js unless
                         --servers names it; exit code 1 only if the harness broke (echo
                         mismatch, crash, lost echoes or log lines)
  --scale                only: N idle connections to one wirelog (text log) process,
                         RSS per connection and time to connect them all
  --fanout               only the pub/sub sections (also in the full and quick runs): fan-out
                         to 1, 100, 10,000 subscribers of one topic (wirelog pubsub with its
                         log, ws send() loop, ws frame once + cork, uWebSockets.js publish),
                         resuming a session that missed 1,000 messages, memory per 1,000 idle
                         subscribed clients; results in <out>/pubsub-latest.json

Overrides:
  --rounds N             rounds (each runs every server once, in order)
  --duration S           seconds per measurement window
  --warmup S             seconds of load before each window
  --connections C        closed loop: connections (split over the generators)
  --pipeline P           closed loop: messages in flight per connection
  --sizes 64,4096        closed loop: payload sizes in bytes
  --clients frames,ws    closed-loop clients: frames (raw sockets, pre-masked frames: server
                         capacity) and ws (the ws package: a realistic client)
  --rates 1000,5000,…    open-loop steps, total msg/s (default 1000,5000,20000,50000)
  --rate-client frames   client of the open-loop steps (frames or ws)
  --latency-connections N
  --idle-connections N   idle connections for RSS/conn and accept rate (0 = skip)
  --scale-connections N  idle connections in --scale (default 100000; capped by fd limits)
  --startup-runs N       runs of each start-up command (0 = skip)
  --fanout-subscribers 1,100,10000
                         fan-out subscriber counts (0 alone = skip fan-out)
  --resume-missed N      messages a resuming session missed (0 = skip)
  --memory-clients N     idle subscribed clients for the memory figure (0 = skip)
  --servers a,b          which servers, in order (default: ${ids(KNOWN)};
                         smoke: ${ids(SMOKE_SERVERS)})
  --generators G         load generator processes
  --heartbeat S          wirelog --timeout (heartbeat interval; default: wirelog's own, 30 s)
  --no-uws-install       use uWebSockets.js only if already in the cache, never install it
  --no-pin               do not pin server and generators to CPUs with taskset
  --cpu-prof             write a V8 CPU profile of each server process to <out>/profiles/
                         (profiling slows the servers: use it to find hot spots, not figures)
  --out DIR              where results go (default bench-results)
  --help`

export class UsageError extends Error {}

export function parseOptions(argv: readonly string[]): Options | 'help' {
  let profile: Profile = 'default'
  for (const a of argv) {
    if (a === '--help' || a === '-h') return 'help'
    if (a === '--quick') profile = 'quick'
    else if (a === '--smoke') profile = 'smoke'
    else if (a === '--scale') profile = 'scale'
    else if (a === '--fanout') profile = 'fanout'
  }
  const o: Options = {
    profile,
    ...PROFILES[profile],
    servers: [...(profile === 'smoke' ? SMOKE_SERVERS : KNOWN)],
    serversNamed: false,
    clients: ['frames', 'ws'],
    rateClient: 'frames',
    generators: undefined,
    heartbeat: undefined,
    uwsInstall: true,
    pin: true,
    outDir: 'bench-results',
    cpuProf: false,
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--quick' || a === '--smoke' || a === '--scale' || a === '--fanout') continue
    if (a === '--no-pin') {
      o.pin = false
      continue
    }
    if (a === '--cpu-prof') {
      o.cpuProf = true
      continue
    }
    if (a === '--no-uws-install') {
      o.uwsInstall = false
      continue
    }
    const [flag, inline] =
      a.startsWith('--') && a.includes('=')
        ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]
        : [a, undefined]
    const value = (): string => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new UsageError(`${flag} needs a value`)
      return v
    }
    const num = (min: number, int = true): number => {
      const raw = value()
      const n = Number(raw)
      if (!Number.isFinite(n) || n < min || (int && !Number.isInteger(n))) {
        throw new UsageError(
          `${flag}: expected ${int ? 'a whole number' : 'a number'} ≥ ${min}, got ${JSON.stringify(raw)}`,
        )
      }
      return n
    }
    const list = (check: (n: number) => boolean): number[] =>
      value()
        .split(',')
        .map((x) => {
          const n = Number(x)
          if (!Number.isInteger(n) || !check(n))
            throw new UsageError(`${flag}: bad value ${JSON.stringify(x)}`)
          return n
        })
    const client = (x: string): ClientKind => {
      if (x !== 'frames' && x !== 'ws')
        throw new UsageError(`${flag}: expected frames or ws, got ${JSON.stringify(x)}`)
      return x
    }
    switch (flag) {
      case '--rounds':
        o.rounds = num(1)
        break
      case '--duration':
        o.duration = num(0.1, false)
        break
      case '--warmup':
        o.warmup = num(0, false)
        break
      case '--connections':
        o.connections = num(1)
        break
      case '--pipeline':
        o.pipeline = num(1)
        break
      case '--sizes':
        o.sizes = list((n) => n >= 1 && n <= 1024 * 1024 - 6)
        break
      case '--clients':
        o.clients = value().split(',').map(client)
        break
      case '--rates':
      case '--rate':
        o.rates = list((n) => n >= 1 && n <= 1_000_000)
        break
      case '--rate-client':
        o.rateClient = client(value())
        break
      case '--latency-connections':
        o.latencyConnections = num(1)
        break
      case '--idle-connections':
        o.idleConnections = num(0)
        break
      case '--scale-connections':
        o.scaleConnections = num(1)
        break
      case '--startup-runs':
        o.startupRuns = num(0)
        break
      case '--fanout-subscribers':
        o.fanoutSubscribers = list((n) => n >= 0 && n <= 15_000).filter((n) => n > 0)
        break
      case '--resume-missed':
        o.resumeMissed = num(0)
        break
      case '--memory-clients':
        o.memoryClients = num(0)
        break
      case '--servers': {
        o.serversNamed = true
        o.servers = value()
          .split(',')
          .map((id) => {
            const s = KNOWN.find((x) => x.id === id)
            if (!s)
              throw new UsageError(
                `--servers: unknown server ${JSON.stringify(id)} (known: ${KNOWN.map((x) => x.id).join(', ')})`,
              )
            return s
          })
        break
      }
      case '--generators':
        o.generators = num(1)
        break
      case '--heartbeat':
        o.heartbeat = num(0, false)
        break
      case '--out':
        o.outDir = value()
        break
      default:
        throw new UsageError(`unknown flag ${JSON.stringify(a)} (see --help)`)
    }
  }
  return o
}
