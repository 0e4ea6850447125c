/**
 * What the Prometheus metrics cost: server CPU per echoed message with metrics on (the
 * default) and off (`--no-metrics`), in the same run, against the same load generator
 * processes, alternating which goes first each round; the median of the rounds and the
 * on/off ratio are printed. The server is the real CLI with its default text log, as in
 * `npm run bench`. Each "on" round ends with a scrape of /metrics whose message counter must
 * match what the generators sent (the figure is for counting every message, not skipping).
 *
 *   npm run build && tsc -p tsconfig.test.json && node .build/bench/metrics-overhead.js \
 *     [--rounds 3] [--duration 3] [--warmup 1] [--connections 50] [--pipeline 10] \
 *     [--size 64] [--client frames|ws] [--rate <msg/s>] [--no-pin]
 *
 * Bounded: at most 9 rounds of at most 30 s each, and every child ends itself after its
 * lifetime even if this process dies.
 */
import { get } from 'node:http'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  Generators,
  type LoadResult,
  type Placement,
  removeServerDirs,
  runLoad,
  type ServerUnderTest,
  startServer,
} from './measure.js'
import { allowedCpus, hasTaskset, killAll } from './proc.js'
import type { ClientKind, ServerConfig } from './protocol.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '..', '..')

interface Args {
  rounds: number
  duration: number
  warmup: number
  connections: number
  pipeline: number
  size: number
  client: ClientKind
  /** 0: closed loop (saturation); else open loop at this many messages/s. */
  rate: number
  pin: boolean
}

function usage(msg: string): never {
  process.stderr.write(`metrics-overhead: ${msg}\n`)
  process.exit(2)
}

function parse(argv: readonly string[]): Args {
  const a: Args = {
    rounds: 3,
    duration: 3,
    warmup: 1,
    connections: 50,
    pipeline: 10,
    size: 64,
    client: 'frames',
    rate: 0,
    pin: true,
  }
  const bounds: Record<string, [number, number]> = {
    rounds: [1, 9],
    duration: [1, 30],
    warmup: [0, 10],
    connections: [1, 500],
    pipeline: [1, 100],
    size: [1, 65536],
    rate: [0, 200_000],
  }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    if (flag === '--no-pin') {
      a.pin = false
      continue
    }
    const name = flag.replace(/^--/, '')
    const value = argv[++i]
    if (value === undefined) usage(`${flag} needs a value`)
    if (name === 'client') {
      if (value !== 'frames' && value !== 'ws') usage('--client takes frames or ws')
      a.client = value
      continue
    }
    const range = bounds[name]
    if (range === undefined)
      usage(
        `unknown flag ${flag} (--rounds --duration --warmup --connections --pipeline --size --client --rate --no-pin)`,
      )
    const n = Number(value)
    if (!Number.isInteger(n) || n < range[0] || n > range[1])
      usage(`${flag} takes a whole number from ${range[0]} to ${range[1]}, got ${value}`)
    ;(a as unknown as Record<string, number>)[name] = n
  }
  return a
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** `wirelog_messages_received_total` from the server's /metrics. */
function receivedTotal(port: number): Promise<number> {
  return new Promise((resolveP, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
      })
      res.on('end', () => {
        const m = /^wirelog_messages_received_total (\S+)$/m.exec(body)
        if (res.statusCode !== 200 || m === null)
          reject(new Error(`GET /metrics: ${res.statusCode}, no messages counter`))
        else resolveP(Number(m[1]))
      })
    }).on('error', reject)
  })
}

async function main(): Promise<void> {
  const a = parse(process.argv.slice(2))
  const cpus = allowedCpus()
  const pin = a.pin && cpus.length >= 2 && hasTaskset()
  const place: Placement = {
    dir: HERE,
    cli: join(ROOT, 'dist', 'cli.js'),
    serverCpu: pin ? cpus[0] : undefined,
    generatorCpus: pin ? cpus.slice(1) : [],
    generators: 1,
  }
  const lifetimeMs = (a.rounds * 2 * (a.duration + a.warmup + 20) + 60) * 1000
  const nofile = a.connections + 1024
  const gens = await Generators.start(place, 1, nofile, lifetimeMs)
  const variants = [
    { id: 'metrics on', flags: [] as string[] },
    { id: 'metrics off', flags: ['--no-metrics'] },
  ]
  const results: Record<string, LoadResult[]> = { 'metrics on': [], 'metrics off': [] }
  process.stdout.write(
    `server CPU per message, ${a.size} B ${a.rate > 0 ? `open loop at ${a.rate} msg/s` : 'closed loop'}, ${a.connections} connections × ${a.pipeline} in flight, ${a.client} client; ${pin ? `server on CPU ${place.serverCpu}, generator on CPU ${place.generatorCpus.join(',')}` : 'not pinned'}\n`,
  )
  try {
    for (let round = 1; round <= a.rounds; round++) {
      const order = round % 2 === 1 ? variants : [...variants].reverse()
      for (const v of order) {
        const config: ServerConfig = {
          kind: 'wirelog',
          logging: true,
          format: 'text',
          sync: false,
          heartbeat: undefined,
          extraFlags: v.flags,
          maxLifetimeMs: lifetimeMs,
        }
        const server: ServerUnderTest = await startServer({ name: v.id, config, place, nofile })
        try {
          const r = await runLoad(server, gens, {
            mode: a.rate > 0 ? 'open' : 'closed',
            client: a.client,
            connections: a.connections,
            pipeline: a.pipeline,
            size: a.size,
            rate: a.rate,
            warmupS: a.warmup,
            durationS: a.duration,
            concurrency: 50,
          })
          let check = ''
          if (v.flags.length === 0) {
            const counted = await receivedTotal(server.port)
            if (counted !== r.sent)
              throw new Error(`/metrics counted ${counted} messages, the generator sent ${r.sent}`)
            check = `, /metrics counted all ${counted.toLocaleString('en-US')}`
          }
          results[v.id]!.push(r)
          process.stdout.write(
            `round ${round} ${v.id.padEnd(11)} ${r.cpuUsPerMsg.toFixed(2)} µs/msg  ${Math.round(r.msgsPerSec).toLocaleString('en-US')} msg/s  server CPU ${r.serverCpuPct.toFixed(0)}%${check}\n`,
          )
        } finally {
          await server.close()
        }
      }
    }
  } finally {
    await gens.close()
    removeServerDirs()
  }
  const on = median(results['metrics on']!.map((r) => r.cpuUsPerMsg))
  const off = median(results['metrics off']!.map((r) => r.cpuUsPerMsg))
  process.stdout.write(
    `median of ${a.rounds}: metrics on ${on.toFixed(2)} µs/msg, off ${off.toFixed(2)} µs/msg, ratio on/off ${(on / off).toFixed(3)} (${(((on - off) / off) * 100).toFixed(1)}%)\n`,
  )
}

main().catch((err: unknown) => {
  killAll()
  removeServerDirs()
  process.stderr.write(`metrics-overhead: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
