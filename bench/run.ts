/**
 * `npm run bench`: start each server under test in its own process, measure it with separate
 * load generator processes, round after round (A B C … A B C …), then print every figure with
 * its median, range and ratio to the raw `ws` baseline, judge the targets, and write all
 * rounds to bench-results/. `--scale` instead holds many idle connections on one wirelog.
 *
 * The exit code is 0 unless the harness itself failed: an echo that did not match, a
 * server or generator that crashed, echoes or log lines that went missing, a usage error (2).
 */
import { createRequire } from 'node:module'
import { cpus, loadavg, release, tmpdir } from 'node:os'
import { dirname, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import {
  Generators,
  type LoadResult,
  type Placement,
  reachableNofile,
  removeServerDirs,
  runIdle,
  runLoad,
  ServerProcess,
  startPair,
} from './measure.js'
import { HELP, type Options, parseOptions, type ServerSpec, UsageError } from './options.js'
import {
  allowedCpus,
  clockTicks,
  ephemeralPorts,
  filesystemOf,
  hasTaskset,
  killAll,
} from './proc.js'
import {
  metrics,
  type Session,
  summarise,
  table,
  targetLines,
  targets,
  writeJson,
} from './report.js'

const HERE = dirname(fileURLToPath(import.meta.url))
/** Repository root (this file runs from .build/bench). */
const ROOT = resolve(HERE, '..', '..')

function say(line = ''): void {
  process.stdout.write(`${line}\n`)
}

/** Progress goes to stderr, so stdout is the report alone. */
function progress(line: string): void {
  process.stderr.write(`${line}\n`)
}

function environment(o: Options, place: Placement, pinNote: string): Record<string, unknown> {
  const require = createRequire(import.meta.url)
  let bufferutil = false
  try {
    require('bufferutil')
    bufferutil = !process.env.WS_NO_BUFFER_UTIL
  } catch {}
  const wsVersion = (require('ws/package.json') as { version: string }).version
  return {
    node: process.version,
    ws: wsVersion,
    bufferutil,
    cpu: cpus()[0]?.model ?? '?',
    cpus: allowedCpus(),
    kernel: release(),
    clockTicks: clockTicks(),
    tmpdir: tmpdir(),
    tmpFs: filesystemOf(tmpdir()),
    pinning: pinNote,
    generators: place.generators,
    heartbeat: o.heartbeat,
    loadAverageAtStart: loadavg(),
  }
}

/** Rough seconds per session (on a quiet machine), for the estimate printed up front and the server's own deadline. */
function sessionSeconds(o: Options): number {
  const start = 0.5
  const loads = (o.sizes.length + 1) * (o.warmup + o.duration + 0.2)
  // Connect and close the idle connections and the warm-up churn, at a few thousand per second.
  const idle = o.idleConnections > 0 ? 0.5 + (2.2 * o.idleConnections) / 4000 : 0
  return start + loads + idle + 0.3
}

function checkLoad(name: string, r: LoadResult, errors: string[]): void {
  for (const [i, g] of r.generators.entries()) {
    const who = r.generators.length > 1 ? `${name} (generator ${i + 1})` : name
    if (g.mismatches > 0)
      errors.push(`${who}: ${g.mismatches} echoes did not match; first: ${g.firstMismatch}`)
    for (const e of g.errors) errors.push(`${who}: ${e}`)
  }
  if (r.windowEchoes === 0) errors.push(`${name}: no echoes in the measurement window`)
}

async function session(
  spec: ServerSpec,
  round: number,
  o: Options,
  place: Placement,
): Promise<Session> {
  const s: Session = {
    round,
    server: spec.id,
    startedAt: new Date().toISOString(),
    load: {},
    idle: undefined,
    log: undefined,
    errors: [],
  }
  const lifetimeMs = Math.ceil(sessionSeconds(o) * 4 * 1000) + 300_000
  const nofile = Math.max(o.idleConnections, o.connections, o.latencyConnections) + 1024
  let server: ServerProcess | undefined
  let gens: Generators | undefined
  // Connections the server saw, for the log completeness check: each is a connect and a disconnect line.
  let connections = 0
  try {
    ;[server, gens] = await startPair(
      () =>
        ServerProcess.start(
          spec.id,
          { ...spec.config, heartbeat: o.heartbeat, maxLifetimeMs: lifetimeMs },
          place,
          nofile + 1024,
          o.cpuProf
            ? [
                '--cpu-prof',
                `--cpu-prof-dir=${resolve(ROOT, o.outDir, 'profiles')}`,
                `--cpu-prof-name=${spec.id}-round${round}-${Date.now()}.cpuprofile`,
              ]
            : [],
        ),
      () => Generators.start(place, place.generators, nofile, lifetimeMs),
    )
    if (o.idleConnections > 0) {
      // On a fresh process (no leftovers of the load phases), after a short warm-up churn.
      const warm = Math.min(1000, Math.max(50, Math.floor(o.idleConnections / 10)))
      s.idle = await runIdle(server, gens, {
        connections: o.idleConnections,
        warmConnections: warm,
        concurrency: o.connectConcurrency,
        addresses: [[]],
      })
      connections += warm + s.idle.connections
      if (s.idle.failed > 0)
        s.errors.push(`idle: ${s.idle.failed} connections failed: ${s.idle.firstError}`)
    }
    const shapes = [
      ...o.sizes.map((size) => ({
        key: `closed-${size}`,
        mode: 'closed' as const,
        connections: o.connections,
        size,
        rate: 0,
      })),
      {
        key: 'open',
        mode: 'open' as const,
        connections: o.latencyConnections,
        size: o.latencySize,
        rate: o.rate,
      },
    ]
    for (const sh of shapes) {
      const r = await runLoad(server, gens, {
        mode: sh.mode,
        connections: sh.connections,
        pipeline: o.pipeline,
        size: sh.size,
        rate: sh.rate,
        warmupS: o.warmup,
        durationS: o.duration,
        concurrency: o.connectConcurrency,
      })
      s.load[sh.key] = r
      connections += sh.connections
      checkLoad(sh.key, r, s.errors)
    }
    await gens.close()
    s.log = await server.close()
    if (spec.config.logging) checkLog(s, connections)
  } catch (err) {
    s.errors.push(await explain(err, server, gens))
  } finally {
    gens?.kill()
    server?.kill()
  }
  return s
}

/**
 * What went wrong, in the terms that matter: a child that died is named (with the tail of its
 * stderr) rather than the symptom it caused here (a missing /proc entry, a timeout).
 */
async function explain(
  err: unknown,
  server: ServerProcess | undefined,
  gens: Generators | undefined,
): Promise<string> {
  const children = [...(server ? [server.child] : []), ...(gens?.children ?? [])]
  // A crash is seen here first as its symptom; give the exit a moment to be reaped.
  await Promise.race([Promise.all(children.map((c) => c.exited)), sleep(1000)])
  const dead = children.filter((c) => c.exit !== undefined && c.exit !== 0)
  const message = (err as Error).message ?? String(err)
  if (dead.length === 0) return message
  const who = dead.map(
    (c) =>
      `${c.name} exited (${c.exit})${c.stderr.trim() ? `; stderr: ${c.stderr.trim().slice(-500)}` : ''}`,
  )
  return `${who.join('; ')} [while: ${message}]`
}

/** Every connect, message and disconnect must be in the file: nothing dropped, nothing lost. */
function checkLog(s: Session, connections: number): void {
  const log = s.log
  if (!log) {
    s.errors.push('log: no report from the server')
    return
  }
  const echoed = Object.values(s.load).reduce((a, r) => a + r.echoed, 0)
  const expected = echoed + 2 * connections
  if (log.dropped > 0 || log.writeErrors > 0)
    s.errors.push(`log: ${log.dropped} lines dropped, ${log.writeErrors} write errors`)
  if (log.fileLines < expected) {
    s.errors.push(
      `log: ${log.fileLines} lines in the file, expected at least ${expected} (${echoed} messages, ${connections} connections)`,
    )
  }
}

async function runRounds(
  o: Options,
  place: Placement,
  env: Record<string, unknown>,
  started: Date,
): Promise<number> {
  const est = sessionSeconds(o) * o.servers.length * o.rounds
  const about = est < 120 ? `${Math.ceil(est / 10) * 10} s` : `${Math.ceil(est / 60)} min`
  progress(`${o.rounds} round(s) × ${o.servers.length} servers, about ${about} on a quiet machine`)
  const sessions: Session[] = []
  for (let round = 1; round <= o.rounds; round++) {
    for (const spec of o.servers) {
      const t0 = Date.now()
      const s = await session(spec, round, o, place)
      sessions.push(s)
      const m64 = s.load[`closed-${o.sizes[0]}`]
      const brief = m64
        ? `${Math.round(m64.msgsPerSec).toLocaleString('en-US')} msg/s, ${m64.cpuUsPerMsg.toFixed(2)} µs/msg`
        : ''
      progress(
        `round ${round}/${o.rounds}  ${spec.label.padEnd(20)} ${((Date.now() - t0) / 1000).toFixed(1)} s  ${brief}${s.errors.length ? `  ERRORS: ${s.errors.length}` : ''}`,
      )
      for (const e of s.errors) progress(`  ! ${e}`)
    }
  }

  const list = metrics(o)
  const sum = summarise(sessions, o.servers, list)
  const tgs = targets(sum, o)
  say()
  say(
    `Closed loop: ${o.connections} connections × ${o.pipeline} in flight, ${o.sizes.map((x) => `${x} B`).join(' and ')} payloads; ` +
      `open loop: ${o.rate.toLocaleString('en-US')} msg/s over ${o.latencyConnections} connections, ${o.latencySize} B; ` +
      `${o.warmup} s warm-up + ${o.duration} s window each; ${o.rounds} round(s); medians, min – max over rounds.`,
  )
  say()
  say(table(sessions, o.servers, list, sum))
  say('Targets (wirelog text log vs raw ws, same run; informational):')
  say(targetLines(tgs))
  const errors = sessions.flatMap((s) => s.errors.map((e) => `round ${s.round} ${s.server}: ${e}`))
  env.loadAverageAtEnd = loadavg()
  const path = writeJson(resolve(ROOT, o.outDir), started, {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    environment: env,
    options: { ...o, servers: o.servers.map((s) => s.id) },
    sessions,
    summary: sum,
    targets: tgs,
    errors,
  })
  say()
  say(`All rounds: ${path} (and latest.json)`)
  if (errors.length > 0) {
    say()
    say(`HARNESS ERRORS (${errors.length}):`)
    for (const e of errors) say(`  ${e}`)
    return 1
  }
  return 0
}

async function runScale(
  o: Options,
  place: Placement,
  env: Record<string, unknown>,
  started: Date,
): Promise<number> {
  const want = o.scaleConnections
  // Descriptors beyond the connections: the log, the listener, stdio, libuv internals.
  const serverNofile = reachableNofile(want + 1024)
  const genNofile = reachableNofile(Math.min(want, 30_000) + 512)
  const n = Math.min(want, serverNofile - 1024)
  const perGen = Math.max(1000, Math.min(25_000, genNofile - 512))
  const gens = Math.ceil(n / perGen)
  // Past one source address's ephemeral port range, spread connections over 127.X.a.b with
  // the client's localAddress. That means bind() before connect(), which only searches half
  // of the range (odd ports) and must avoid every socket on the address, TIME_WAIT included:
  // it slows down as the range fills, so each address gets about a third of it, and a random
  // second octet keeps a run clear of what a previous run left behind. Below that, plain
  // connect() from the default address is cheaper (and may reuse TIME_WAIT ports on loopback).
  const range = ephemeralPorts()
  const bind = n > Math.floor(range * 0.8)
  const perAddress = Math.max(1000, Math.floor(range * 0.35))
  const octet = 1 + Math.floor(Math.random() * 254)
  let nextAddress = 2
  const addresses = Array.from({ length: gens }, (_x, i) =>
    bind
      ? Array.from(
          { length: Math.ceil((Math.floor(n / gens) + (i < n % gens ? 1 : 0)) / perAddress) },
          () => {
            const k = nextAddress++
            return `127.${octet}.${k >> 8}.${k & 255}`
          },
        )
      : [],
  )
  const notes: string[] = []
  if (n < want) {
    notes.push(
      `capped at ${n.toLocaleString('en-US')} connections: the server may open ${serverNofile.toLocaleString('en-US')} files ` +
        `(hard limit here; raising it needs CAP_SYS_RESOURCE or a higher limit from the caller)`,
    )
  }
  say(
    `Scale: ${n.toLocaleString('en-US')} idle connections to one wirelog process (text log), from ${gens} generator(s) ${bind ? `bound to ${addresses.flat().join(', ')}` : 'on the default source address'}`,
  )
  for (const note of notes) say(`  note: ${note}`)
  let server: ServerProcess | undefined
  let generators: Generators | undefined
  const errors: string[] = []
  let result: Awaited<ReturnType<typeof runIdle>> | undefined
  let log: Awaited<ReturnType<ServerProcess['close']>> | undefined
  try {
    ;[server, generators] = await startPair(
      () =>
        ServerProcess.start(
          'text',
          {
            kind: 'wirelog',
            logging: true,
            format: 'text',
            sync: false,
            heartbeat: o.heartbeat,
            maxLifetimeMs: 3_600_000,
          },
          place,
          serverNofile,
        ),
      () => Generators.start(place, gens, genNofile, 3_600_000),
    )
    result = await runIdle(server, generators, {
      connections: n,
      warmConnections: 1000,
      concurrency: o.connectConcurrency,
      addresses,
    })
    if (result.failed > 0) errors.push(`${result.failed} connections failed: ${result.firstError}`)
    await generators.close()
    log = await server.close()
  } catch (err) {
    errors.push(await explain(err, server, generators))
  } finally {
    generators?.kill()
    server?.kill()
  }
  if (result) {
    const kb = result.rssPerConn / 1024
    say()
    say(
      `connections open         ${result.connections.toLocaleString('en-US')}${result.failed ? ` (${result.failed} failed)` : ''}`,
    )
    say(
      `time to connect them all ${(result.connectMs / 1000).toFixed(2)} s (${Math.round(result.acceptPerSec).toLocaleString('en-US')} connections/s)`,
    )
    say(`server CPU per connection ${result.cpuUsPerConn.toFixed(1)} µs`)
    say(
      `server RSS               ${(result.rssBefore / 1048576).toFixed(1)} MB → ${(result.rssAfter / 1048576).toFixed(1)} MB`,
    )
    say(
      `RSS per connection       ${kb.toFixed(2)} KB (JS heap ${(result.heapPerConn / 1024).toFixed(2)} KB)   ${kb <= 9 ? 'PASS' : 'FAIL'} ≤ 9 KB`,
    )
  }
  const path = writeJson(resolve(ROOT, o.outDir), started, {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    environment: { ...env, loadAverageAtEnd: loadavg() },
    options: { ...o, servers: ['text'] },
    scale: {
      requested: want,
      connections: n,
      serverNofile,
      generatorNofile: genNofile,
      addresses,
      notes,
      result,
      log,
    },
    errors,
  })
  say()
  say(`Result: ${path} (and latest.json)`)
  for (const e of errors) say(`HARNESS ERROR: ${e}`)
  return errors.length > 0 ? 1 : 0
}

async function main(): Promise<number> {
  let o: Options
  try {
    const parsed = parseOptions(process.argv.slice(2))
    if (parsed === 'help') {
      say(HELP)
      return 0
    }
    o = parsed
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n`)
      return 2
    }
    throw err
  }
  if (o.profile !== 'scale' && o.idleConnections > 0) {
    // One process and one source address hold the idle connections here; more is --scale's job.
    const most = Math.min(
      reachableNofile(o.idleConnections + 2048) - 2048,
      Math.floor(ephemeralPorts() * 0.8),
    )
    if (o.idleConnections > most) {
      process.stderr.write(
        `bench: --idle-connections ${o.idleConnections} is more than one process can open here (${most}); use --scale --scale-connections ${o.idleConnections}\n`,
      )
      return 2
    }
  }
  const started = new Date()
  const allowed = allowedCpus()
  const pin = o.pin && allowed.length >= 2 && hasTaskset()
  const place: Placement = {
    dir: HERE,
    serverCpu: pin ? allowed[0] : undefined,
    generatorCpus: pin ? allowed.slice(1) : [],
    generators: o.generators ?? Math.max(1, Math.min(4, allowed.length - 1)),
  }
  const pinNote = pin
    ? `server pinned to CPU ${place.serverCpu}, generators to CPU ${place.generatorCpus.join(',')} (taskset)`
    : `not pinned (${!o.pin ? '--no-pin' : allowed.length < 2 ? 'only one CPU' : 'taskset not found'})`
  const env = environment(o, place, pinNote)
  say(
    `wirelog bench (${o.profile}) — node ${env.node}, ws ${env.ws}${env.bufferutil ? ' + bufferutil' : ' (no bufferutil)'}, ` +
      `${allowed.length} CPU(s): ${env.cpu}`,
  )
  say(
    `${pinNote}; ${place.generators} generator process(es); logs in ${env.tmpdir} (${env.tmpFs}); wirelog heartbeat ${o.heartbeat > 0 ? `${o.heartbeat} s` : 'off'}`,
  )
  if (o.cpuProf) {
    say(
      `CPU profiles of the servers go to ${resolve(ROOT, o.outDir, 'profiles')}; profiling skews every figure`,
    )
  }
  say(
    `load average at start: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  )
  return o.profile === 'scale'
    ? runScale(o, place, env, started)
    : runRounds(o, place, env, started)
}

function cleanUp(): void {
  killAll()
  removeServerDirs()
}

process.on('exit', cleanUp)
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    cleanUp()
    process.exit(130)
  })
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`)
    killAll()
    process.exitCode = 1
  },
)
