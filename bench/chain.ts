/**
 * What `--log-chain` costs: server CPU per logged message of wirelog with its json log, and
 * with its json log chained (and, with `--sign`, sealed), in the same run, round after round
 * (json, chained, json, chained, …), each server in its own process measured by the bench's
 * load generators, closed loop at saturation (64-byte messages) and open loop at a fixed
 * rate. Prints each figure's median over the rounds and the ratio chained / json.
 *
 *   npm run build && npx tsc -p tsconfig.test.json && node .build/bench/chain.js
 *
 * Options: `--rounds N` (default 5), `--duration S` (default 2), `--rate N` (default 5000),
 * `--sign` (also an HMAC seal every 1000 lines), `--no-pin`. About 20 s per round.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import {
  Generators,
  type Placement,
  removeServerDirs,
  runLoad,
  startPair,
  startServer,
} from './measure.js'
import { allowedCpus, hasTaskset, killAll } from './proc.js'
import type { ServerConfig } from './protocol.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '..', '..')

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '2' },
    rate: { type: 'string', default: '5000' },
    sign: { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
  },
})
const ROUNDS = Number(values.rounds)
const DURATION = Number(values.duration)
const RATE = Number(values.rate)

const keyDir = mkdtempSync(join(tmpdir(), 'wirelog-chain-bench-'))
const keyFile = join(keyDir, 'seal.key')
writeFileSync(keyFile, 'a-bench-secret-of-enough-bytes\n')

const variants: Array<{ id: string; flags: string[] }> = [
  { id: 'json', flags: [] },
  {
    id: values.sign ? 'json+chain+seal' : 'json+chain',
    flags: values.sign ? ['--log-chain', '--log-sign-key', keyFile] : ['--log-chain'],
  },
]

const allowed = allowedCpus()
const pin = !values['no-pin'] && allowed.length >= 2 && hasTaskset()
const place: Placement = {
  dir: HERE,
  cli: resolve(ROOT, 'dist', 'cli.js'),
  serverCpu: pin ? allowed[0] : undefined,
  generatorCpus: pin ? allowed.slice(1) : [],
  generators: Math.max(1, Math.min(4, allowed.length - 1)),
}

const phases = [
  { key: 'saturation', mode: 'closed' as const, connections: 32, rate: 0 },
  { key: `${RATE} msg/s`, mode: 'open' as const, connections: 10, rate: RATE },
]

/** variant → phase → µs CPU per message, one per round. */
const results = new Map<string, Map<string, number[]>>()
for (const v of variants) results.set(v.id, new Map(phases.map((p) => [p.key, []])))

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function session(v: (typeof variants)[number]): Promise<void> {
  const config: ServerConfig = {
    kind: 'wirelog',
    logging: true,
    format: 'json',
    sync: false,
    heartbeat: undefined,
    extraFlags: v.flags,
    maxLifetimeMs: 600_000,
  }
  const [server, gens] = await startPair(
    () => startServer({ name: v.id, config, place, nofile: 4096 }),
    () => Generators.start(place, place.generators, 4096, 600_000),
  )
  try {
    for (const p of phases) {
      const r = await runLoad(server, gens, {
        mode: p.mode,
        client: 'frames',
        connections: p.connections,
        pipeline: 16,
        size: 64,
        rate: p.rate,
        warmupS: 0.5,
        durationS: DURATION,
        concurrency: 50,
      })
      results.get(v.id)!.get(p.key)!.push(r.cpuUsPerMsg)
    }
    await gens.close()
    const log = await server.close()
    if (log && log.exitCode !== 0) throw new Error(`${v.id}: wirelog exited ${log.exitCode}`)
  } finally {
    gens.kill()
    server.kill()
  }
}

try {
  console.log(
    `${ROUNDS} rounds of ${variants.map((v) => v.id).join(' / ')}, 64-byte messages, frames client, ${DURATION} s windows; ${pin ? `server pinned to CPU ${place.serverCpu}` : 'not pinned'}`,
  )
  for (let r = 1; r <= ROUNDS; r++) {
    for (const v of variants) await session(v)
    const line = phases
      .map(
        (p) =>
          `${p.key}: ${variants.map((v) => results.get(v.id)!.get(p.key)!.at(-1)!.toFixed(2)).join(' / ')} µs`,
      )
      .join(', ')
    console.log(`round ${r}: ${line}`)
  }
  const [a, b] = variants
  for (const p of phases) {
    const xa = results.get(a!.id)!.get(p.key)!
    const xb = results.get(b!.id)!.get(p.key)!
    // Per round, then the median of the ratios: both servers of one round saw the same machine.
    const ratios = xa.map((x, i) => xb[i]! / x)
    console.log(
      `${p.key.padEnd(12)} ${a!.id} ${median(xa).toFixed(2)} µs/msg, ${b!.id} ${median(xb).toFixed(2)} µs/msg (medians); ${b!.id} / ${a!.id} = ${median(ratios).toFixed(3)} (median of per-round ratios ${ratios.map((x) => x.toFixed(2)).join(', ')})`,
    )
  }
} finally {
  killAll()
  removeServerDirs()
  rmSync(keyDir, { recursive: true, force: true })
}
