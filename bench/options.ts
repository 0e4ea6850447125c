/**
 * What a bench run does: the servers compared, the profiles (`--quick`, `--smoke`,
 * `--scale`, default) and the flags that override them.
 */
import type { ServerConfig } from './protocol.js'

export interface ServerSpec {
  id: string
  /** What the table says. */
  label: string
  config: Omit<ServerConfig, 'maxLifetimeMs' | 'heartbeat'>
}

/** The servers a run compares unless `--servers` says otherwise, in the order each round runs them. */
export const SERVERS: readonly ServerSpec[] = [
  {
    id: 'raw-ws',
    label: 'raw ws',
    config: { kind: 'raw-ws', logging: false, format: 'text', sync: false },
  },
  {
    id: 'off',
    label: 'wirelog, log off',
    config: { kind: 'wirelog', logging: false, format: 'text', sync: false },
  },
  {
    id: 'text',
    label: 'wirelog, text',
    config: { kind: 'wirelog', logging: true, format: 'text', sync: false },
  },
  {
    id: 'json',
    label: 'wirelog, json',
    config: { kind: 'wirelog', logging: true, format: 'json', sync: false },
  },
  {
    id: 'plain',
    label: 'wirelog, plain',
    config: { kind: 'wirelog', logging: true, format: 'plain', sync: false },
  },
  {
    id: 'sync',
    label: 'wirelog, text sync',
    config: { kind: 'wirelog', logging: true, format: 'text', sync: true },
  },
]

/** Known but not run by default: raw ws that also corks (as wirelog does), for reference. */
const EXTRA_SERVERS: readonly ServerSpec[] = [
  {
    id: 'raw-ws-cork',
    label: 'raw ws, corked',
    config: { kind: 'raw-ws-cork', logging: false, format: 'text', sync: false },
  },
]

const KNOWN = [...SERVERS, ...EXTRA_SERVERS]

export type Profile = 'default' | 'quick' | 'smoke' | 'scale'

export interface Options {
  profile: Profile
  servers: ServerSpec[]
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
  /** Open loop (latency): total messages/s, over this many connections, of `latencySize` bytes. */
  rate: number
  latencyConnections: number
  latencySize: number
  /** Idle connections for RSS/connection and accept rate; 0 skips that part. */
  idleConnections: number
  /** Handshakes in flight at once per generator. */
  connectConcurrency: number
  /** Scale mode: idle connections to one wirelog process. */
  scaleConnections: number
  /** Load generator processes (default: one per CPU not used by the server, at most 4). */
  generators: number | undefined
  /** wirelog heartbeat interval (s); 0 = off. */
  heartbeat: number
  pin: boolean
  outDir: string
  /** Write a V8 CPU profile of every server process (skews the figures: for finding hot spots). */
  cpuProf: boolean
}

const PROFILES: Record<
  Profile,
  Omit<Options, 'profile' | 'servers' | 'generators' | 'heartbeat' | 'pin' | 'outDir' | 'cpuProf'>
> = {
  // About 8 minutes on a quiet machine: 6 servers × 3 rounds × ~25 s.
  default: {
    rounds: 3,
    warmup: 1,
    duration: 5,
    connections: 32,
    pipeline: 16,
    sizes: [64, 4096],
    rate: 5000,
    latencyConnections: 10,
    latencySize: 64,
    idleConnections: 10_000,
    connectConcurrency: 200,
    scaleConnections: 100_000,
  },
  // About a minute (more on a busy machine): same shape, short windows, 1,000 idle connections.
  quick: {
    rounds: 3,
    warmup: 0.2,
    duration: 0.5,
    connections: 32,
    pipeline: 16,
    sizes: [64, 4096],
    rate: 5000,
    latencyConnections: 10,
    latencySize: 64,
    idleConnections: 1000,
    connectConcurrency: 200,
    scaleConnections: 100_000,
  },
  // CI: proves the harness works end to end (~30 s); the figures mean little.
  smoke: {
    rounds: 1,
    warmup: 0.2,
    duration: 0.8,
    connections: 8,
    pipeline: 8,
    sizes: [64, 4096],
    rate: 2000,
    latencyConnections: 4,
    latencySize: 64,
    idleConnections: 200,
    connectConcurrency: 50,
    scaleConnections: 100_000,
  },
  scale: {
    rounds: 1,
    warmup: 1,
    duration: 5,
    connections: 32,
    pipeline: 16,
    sizes: [64, 4096],
    rate: 5000,
    latencyConnections: 10,
    latencySize: 64,
    idleConnections: 0,
    connectConcurrency: 500,
    scaleConnections: 100_000,
  },
}

export const HELP = `npm run bench -- [flags]

Compares wirelog (log off, text, json, plain, text sync) with a raw ws echo server, in
separate pinned processes, interleaved over several rounds.

Profiles:
  (none)                 full run, ~8 min: 3 rounds, 5 s windows, 10,000 idle connections
  --quick                ~1–1.5 min: 3 rounds, 0.5 s windows, 1,000 idle connections
  --smoke                CI check of the harness, ~30 s: 1 round; exit code 1 only if the
                         harness broke (echo mismatch, crash, lost echoes or log lines)
  --scale                only: N idle connections to one wirelog (text log) process,
                         RSS per connection and time to connect them all

Overrides:
  --rounds N             rounds (each runs every server once, in order)
  --duration S           seconds per measurement window
  --warmup S             seconds of load before each window
  --connections C        closed loop: connections (split over the generators)
  --pipeline P           closed loop: messages in flight per connection
  --sizes 64,4096        closed loop: payload sizes in bytes
  --rate R               open loop (latency): total messages/s
  --latency-connections N
  --idle-connections N   idle connections for RSS/conn and accept rate (0 = skip)
  --scale-connections N  idle connections in --scale (default 100000; capped by fd limits)
  --servers a,b          which servers, in order (default: ${SERVERS.map((s) => s.id).join(',')});
                         also known: ${EXTRA_SERVERS.map((s) => s.id).join(', ')} (raw ws that corks like wirelog)
  --generators G         load generator processes
  --heartbeat S          wirelog heartbeat interval in seconds (default 0 = off)
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
  }
  const o: Options = {
    profile,
    ...PROFILES[profile],
    servers: [...SERVERS],
    generators: undefined,
    heartbeat: 0,
    pin: true,
    outDir: 'bench-results',
    cpuProf: false,
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--quick' || a === '--smoke' || a === '--scale') continue
    if (a === '--no-pin') {
      o.pin = false
      continue
    }
    if (a === '--cpu-prof') {
      o.cpuProf = true
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
        o.sizes = value()
          .split(',')
          .map((s) => {
            const n = Number(s)
            if (!Number.isInteger(n) || n < 1 || n > 1024 * 1024 - 6)
              throw new UsageError(`--sizes: bad size ${JSON.stringify(s)}`)
            return n
          })
        break
      case '--rate':
        o.rate = num(1)
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
      case '--servers': {
        const ids = value().split(',')
        o.servers = ids.map((id) => {
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
