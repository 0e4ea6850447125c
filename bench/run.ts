/**
 * `npm run bench`: start each server under test in its own process, measure it with separate
 * load generator processes, round after round (A B C … A B C …), then print every figure with
 * its median, range and ratios to raw ws corked (the fair baseline: it corks as wirelog does)
 * and to plain raw ws, the rate table, the start-up figures and the targets, and write all
 * rounds to bench-results/ with a plot of CPU per message against rate. `--scale` instead
 * holds many idle connections on one wirelog.
 *
 * The exit code is 0 unless the harness itself failed: an echo that did not match, a
 * server or generator that crashed, echoes or log lines that went missing, a usage error (2).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
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
  type ServerUnderTest,
  startPair,
  startServer,
} from './measure.js'
import { HELP, type Options, parseOptions, type ServerSpec, UsageError } from './options.js'
import {
  allowedCpus,
  clockTicks,
  cpuClock,
  cpuSeconds,
  ephemeralPorts,
  filesystemOf,
  hasTaskset,
  killAll,
} from './proc.js'
import { duration, Progress } from './progress.js'
import type { ClientKind, ServerConfig } from './protocol.js'
import { type PubsubResult, pubsubErrors, pubsubLines, runPubsub } from './pubsub-bench.js'
import {
  closedKey,
  mainMetrics,
  plot,
  rateKey,
  rateTable,
  type Session,
  sizeLabel,
  stepMetrics,
  steps,
  summarise,
  table,
  targetLines,
  targets,
  writeJson,
  writeSvg,
} from './report.js'
import { measureStartup, type StartupFigure, type StartupResult } from './startup.js'
import { prepareUws, type UwsStatus } from './uws.js'

const HERE = dirname(fileURLToPath(import.meta.url))
/** Repository root (this file runs from .build/bench). */
const ROOT = resolve(HERE, '..', '..')
/** wirelog's default per-IP connection cap is 1,000: idle connections come from several addresses. */
const PER_SOURCE_ADDRESS = 900

const progress = new Progress()

function say(line = ''): void {
  process.stdout.write(`${line}\n`)
}

function environment(
  o: Options,
  place: Placement,
  pinNote: string,
  uws: UwsStatus | undefined,
): Record<string, unknown> {
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
    cpuClock: cpuClock(),
    tmpdir: tmpdir(),
    tmpFs: filesystemOf(tmpdir()),
    pinning: pinNote,
    generators: place.generators,
    wirelog: {
      cli: place.cli,
      heartbeat: o.heartbeat === undefined ? "wirelog's default (30 s)" : `${o.heartbeat} s`,
      limits: "wirelog's defaults",
    },
    uws,
    loadAverageAtStart: loadavg(),
  }
}

/** One measured phase of a session. */
interface PhasePlan {
  key: string
  label: string
  mode: 'closed' | 'open'
  client: ClientKind
  connections: number
  size: number
  rate: number
}

function phases(o: Options): PhasePlan[] {
  const out: PhasePlan[] = []
  for (const client of o.clients) {
    for (const size of o.sizes) {
      out.push({
        key: closedKey(client, size),
        label: `${sizeLabel(size)} ${client === 'frames' ? 'at saturation (frames client)' : 'closed loop (ws clients)'}`,
        mode: 'closed',
        client,
        connections: o.connections,
        size,
        rate: 0,
      })
    }
  }
  for (const rate of o.rates) {
    out.push({
      key: rateKey(rate),
      label: `open loop at ${rate.toLocaleString('en-US')} msg/s (${o.rateClient} client)`,
      mode: 'open',
      client: o.rateClient,
      connections: o.latencyConnections,
      size: o.latencySize,
      rate,
    })
  }
  return out
}

/** Rough seconds per session (on a quiet machine), for the ETA and the server's own deadline. */
function sessionSeconds(o: Options): number {
  const start = 0.6
  const loads = phases(o).length * (o.warmup + o.duration + 0.4)
  // Connect and close the idle connections and the warm-up churn, at a couple of thousand per second.
  const idle = o.idleConnections > 0 ? 1 + (2.2 * o.idleConnections) / 2500 : 0
  return start + loads + idle + 0.5
}

/** `n` loopback source addresses 127.X.a.b, X random so a run stays clear of a previous run's leftovers. */
function sourceAddresses(n: number): string[] {
  const octet = 1 + Math.floor(Math.random() * 254)
  return Array.from({ length: n }, (_x, i) => {
    const k = i + 2
    return `127.${octet}.${k >> 8}.${k & 255}`
  })
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

interface SessionPlace {
  round: number
  index: number
}

class Clock {
  readonly started = Date.now()
  done = 0
  sessionStarted = Date.now()
  readonly total: number
  readonly estimate: number

  constructor(total: number, estimate: number) {
    this.total = total
    this.estimate = estimate
  }

  /** Seconds left: sessions to go at the pace so far (the estimate before the first one). */
  eta(): number {
    const per =
      this.done > 0 ? (this.sessionStarted - this.started) / 1000 / this.done : this.estimate
    const inThis = (Date.now() - this.sessionStarted) / 1000
    return Math.max(0, (this.total - this.done) * per - inThis)
  }
}

async function session(
  spec: ServerSpec,
  at: SessionPlace,
  o: Options,
  place: Placement,
  uws: UwsStatus | undefined,
  clock: Clock,
): Promise<Session> {
  const s: Session = {
    round: at.round,
    server: spec.id,
    startedAt: new Date().toISOString(),
    load: {},
    idle: undefined,
    log: undefined,
    errors: [],
    notes: [],
    seconds: {},
    loadAverage: loadavg()[0]!,
  }
  let doing = 'starting'
  let t = Date.now()
  const lap = (part: string): void => {
    const now = Date.now()
    s.seconds[part] = (now - t) / 1000
    t = now
  }
  progress.status(
    () =>
      `round ${at.round}/${o.rounds} · server ${at.index + 1}/${o.servers.length} ${spec.label} · ${doing} · ETA ${duration(clock.eta())}`,
  )
  const lifetimeMs = Math.ceil(sessionSeconds(o) * 4 * 1000) + 300_000
  const nofile = Math.max(o.idleConnections, o.connections, o.latencyConnections) + 1024
  const config: ServerConfig = {
    ...spec.config,
    heartbeat: o.heartbeat,
    uwsDir: uws?.dir,
    maxLifetimeMs: lifetimeMs,
  }
  let server: ServerUnderTest | undefined
  let gens: Generators | undefined
  // Connections the server saw, for the log completeness check: each is a connect and a disconnect line.
  let connections = 0
  try {
    ;[server, gens] = await startPair(
      () =>
        startServer({
          name: spec.id,
          config,
          place,
          nofile: nofile + 1024,
          nodeFlags: o.cpuProf
            ? [
                '--cpu-prof',
                `--cpu-prof-dir=${resolve(ROOT, o.outDir, 'profiles')}`,
                `--cpu-prof-name=${spec.id}-round${at.round}-${Date.now()}.cpuprofile`,
              ]
            : [],
        }),
      () => Generators.start(place, place.generators, nofile, lifetimeMs),
    )
    lap('start')
    if (o.idleConnections > 0) {
      doing = `${o.idleConnections.toLocaleString('en-US')} idle connections`
      // On a fresh process (no leftovers of the load phases), after a short warm-up churn.
      const warm = Math.min(1000, Math.max(50, Math.floor(o.idleConnections / 10)))
      s.idle = await runIdle(server, gens, {
        connections: o.idleConnections,
        warmConnections: warm,
        concurrency: o.connectConcurrency,
        addresses: [sourceAddresses(Math.ceil(o.idleConnections / PER_SOURCE_ADDRESS))],
      })
      connections += warm + s.idle.connections
      if (s.idle.failed > 0)
        s.errors.push(`idle: ${s.idle.failed} connections failed: ${s.idle.firstError}`)
      lap('idle')
    }
    for (const ph of phases(o)) {
      doing = ph.label
      const r = await runLoad(server, gens, {
        mode: ph.mode,
        client: ph.client,
        connections: ph.connections,
        pipeline: o.pipeline,
        size: ph.size,
        rate: ph.rate,
        warmupS: o.warmup,
        durationS: o.duration,
        concurrency: o.connectConcurrency,
      })
      s.load[ph.key] = r
      connections += ph.connections
      checkLoad(ph.key, r, s.errors)
      lap(ph.key)
    }
    doing = 'closing'
    await gens.close()
    s.log = await server.close()
    lap('close')
    if (s.log) {
      for (const line of s.log.stderr) s.notes.push(`wirelog stderr: ${line}`)
      if (s.log.exitCode !== 0) s.errors.push(`wirelog exited ${s.log.exitCode} after SIGTERM`)
      if (spec.config.logging) checkLog(s, connections)
    }
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
  server: ServerUnderTest | undefined,
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
  const log = s.log!
  const echoed = Object.values(s.load).reduce((a, r) => a + r.echoed, 0)
  const expected = echoed + 2 * connections
  if (log.fileLines < expected) {
    s.errors.push(
      `log: ${log.fileLines} lines in the file, expected at least ${expected} (${echoed} messages, ${connections} connections)`,
    )
  }
}

function startupLines(r: StartupResult): string {
  const rows: Array<[string, StartupFigure | undefined]> = [
    ['node -e 0 (reference)', r.nodeE0],
    ['wirelog --version', r.version],
    ['exec → listening banner', r.listening],
    ['exec → first echo', r.firstEcho],
  ]
  const w = Math.max(...rows.map(([l]) => l.length))
  return rows
    .map(([l, f]) =>
      f
        ? `${l.padEnd(w)}  ${f.median.toFixed(0).padStart(5)} ms  (${f.min.toFixed(0)} – ${f.max.toFixed(0)}, ${f.n} runs)`
        : `${l.padEnd(w)}    n/a`,
    )
    .join('\n')
}

async function startupFigures(o: Options, place: Placement): Promise<StartupResult | undefined> {
  if (o.startupRuns === 0) return undefined
  let done = 0
  const t0 = Date.now()
  progress.status(
    () =>
      `start-up figures · run ${Math.min(done + 1, o.startupRuns)}/${o.startupRuns} · ${duration((Date.now() - t0) / 1000)}`,
  )
  const r = await measureStartup(place.cli, o.startupRuns, (n) => {
    done = n
  })
  progress.done()
  progress.line(
    `start-up: node -e 0 ${r.nodeE0?.median.toFixed(0) ?? '?'} ms, wirelog --version ${r.version?.median.toFixed(0) ?? '?'} ms, listening ${r.listening?.median.toFixed(0) ?? '?'} ms (medians of ${o.startupRuns})`,
  )
  return r
}

/** The pub/sub sections (pubsub-bench.ts), when the profile has any; also <out>/pubsub-latest.json. */
async function pubsubSection(
  o: Options,
  place: Placement,
  uws: UwsStatus | undefined,
  started: Date,
): Promise<PubsubResult | undefined> {
  if (o.fanoutSubscribers.length === 0 && o.resumeMissed === 0 && o.memoryClients === 0)
    return undefined
  const r = await runPubsub({
    dir: place.dir,
    cli: place.cli,
    rounds: o.rounds,
    warmup: o.warmup,
    duration: o.duration,
    fanoutSubscribers: o.fanoutSubscribers,
    resumeMissed: o.resumeMissed,
    memoryClients: o.memoryClients,
    uwsDir: uws?.available ? uws.dir : undefined,
    progress: (line) => progress.line(line),
  })
  progress.done()
  const dir = resolve(ROOT, o.outDir)
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    resolve(dir, 'pubsub-latest.json'),
    `${JSON.stringify({ startedAt: started.toISOString(), loadAverage: loadavg(), ...r }, null, 2)}\n`,
  )
  return r
}

async function runPubsubOnly(
  o: Options,
  place: Placement,
  uws: UwsStatus | undefined,
  started: Date,
): Promise<number> {
  const r = await pubsubSection(o, place, uws, started)
  say()
  if (r) say(pubsubLines(r))
  say()
  say(`Results: ${resolve(ROOT, o.outDir, 'pubsub-latest.json')}`)
  const errors = r ? pubsubErrors(r) : []
  return errors.length > 0 ? 1 : 0
}

async function runRounds(
  o: Options,
  place: Placement,
  env: Record<string, unknown>,
  started: Date,
  uws: UwsStatus | undefined,
): Promise<number> {
  const per = sessionSeconds(o)
  const est = per * o.servers.length * o.rounds + o.startupRuns * 0.8
  progress.line(
    `${o.rounds} round(s) × ${o.servers.length} servers (${o.servers.map((s) => s.id).join(', ')}), about ${duration(est)} on a quiet machine`,
  )
  const startup = await startupFigures(o, place)
  const clock = new Clock(o.servers.length * o.rounds, per)
  const sessions: Session[] = []
  for (let round = 1; round <= o.rounds; round++) {
    for (const [index, spec] of o.servers.entries()) {
      clock.sessionStarted = Date.now()
      const s = await session(spec, { round, index }, o, place, uws, clock)
      clock.done++
      sessions.push(s)
      const sat = s.load[closedKey('frames', o.sizes[0]!)] ?? s.load[closedKey('ws', o.sizes[0]!)]
      const brief = sat
        ? `${Math.round(sat.msgsPerSec).toLocaleString('en-US')} msg/s at ${sat.serverCpuPct.toFixed(0)}% server CPU, ${sat.cpuUsPerMsg.toFixed(2)} µs/msg (${sizeLabel(sat.size)})`
        : ''
      progress.line(
        `round ${round}/${o.rounds}  ${spec.label.padEnd(20)} ${((Date.now() - clock.sessionStarted) / 1000).toFixed(1).padStart(5)} s  ${brief}${s.errors.length ? `  ERRORS: ${s.errors.length}` : ''}`,
      )
      for (const e of s.errors) progress.line(`  ! ${e}`)
      for (const n of s.notes) progress.line(`  note: ${n}`)
    }
  }
  progress.done()
  const pubsub = await pubsubSection(o, place, uws, started)

  const main = mainMetrics(o)
  const stepList = stepMetrics(o)
  const sum = summarise(sessions, o.servers, [...main, ...stepList])
  const tgs = targets(sum, o)
  const wl =
    o.heartbeat === undefined
      ? 'wirelog: the CLI with its defaults (heartbeat 30 s, per-IP cap 1,000, outbound cap 8 MiB); reference servers: no heartbeat, no caps'
      : `wirelog: the CLI with its defaults but --timeout ${o.heartbeat}; reference servers: no heartbeat, no caps`
  say()
  say(
    `Closed loop: ${o.connections} connections × ${o.pipeline} in flight, ${o.sizes.map(sizeLabel).join(' and ')}, clients: ${o.clients.join(', ')} ` +
      `(frames = raw sockets, pre-masked frames: the server saturates; ws = the ws package: the generator usually saturates first). ` +
      `${o.warmup} s warm-up + ${o.duration} s window each; ${o.rounds} round(s); medians, min – max over rounds. ${wl}.`,
  )
  say()
  say(table(sessions, o.servers, main, sum))
  const satNote = steps(o).some((st) => st.id === 'saturation')
    ? `; saturation = the frames closed loop above (${o.connections} × ${o.pipeline} in flight, so its round trips are mostly queueing)`
    : ''
  say(
    `Rate sweep (open loop, ${o.rateClient} client): ${o.latencyConnections} connections, ${sizeLabel(o.latencySize)}, messages sent on a schedule and each round trip timed ` +
      `from its scheduled send time${satNote}. Medians over rounds.`,
  )
  say()
  say(rateTable(o, o.servers, sum))
  if (startup) {
    say('Start-up (not pinned; medians):')
    say(startupLines(startup))
    for (const e of startup.errors) say(`  ! ${e}`)
    say()
  }
  if (pubsub) {
    say(pubsubLines(pubsub))
    say()
  }
  say('Targets (wirelog text log vs raw ws, same run; informational):')
  say(targetLines(tgs))
  const errors = sessions.flatMap((s) => s.errors.map((e) => `round ${s.round} ${s.server}: ${e}`))
  if (startup && startup.errors.length > 0 && !startup.version && !startup.listening)
    errors.push(`start-up: ${startup.errors[0]}`)
  if (pubsub) errors.push(...pubsubErrors(pubsub))
  env.loadAverageAtEnd = loadavg()
  const outDir = resolve(ROOT, o.outDir)
  const svgPath = writeSvg(
    outDir,
    started,
    plot(
      o,
      o.servers,
      sum,
      `${started.toISOString().slice(0, 10)} · ${env.cpu as string} · node ${process.version} · medians of ${o.rounds} round(s); open loop ${o.latencyConnections} conns × ${sizeLabel(o.latencySize)}`,
    ),
  )
  const path = writeJson(outDir, started, {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    environment: env,
    options: { ...o, servers: o.servers.map((s) => s.id) },
    startup,
    pubsub,
    sessions,
    summary: sum,
    targets: tgs,
    plot: svgPath,
    errors,
  })
  say()
  say(`All rounds: ${path} (and latest.json); plot: ${svgPath} (and latest-cpu-per-msg.svg)`)
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
  // wirelog keeps its default per-IP cap (1,000), so connections are spread over 127.X.a.b
  // source addresses (the client's localAddress), at most 900 each: bind() before connect()
  // then finds free ports at once, since each address holds few sockets.
  const all = sourceAddresses(Math.ceil(n / PER_SOURCE_ADDRESS))
  const addresses = Array.from({ length: gens }, (_x, i) => all.filter((_a, k) => k % gens === i))
  const notes: string[] = []
  if (n < want) {
    notes.push(
      `capped at ${n.toLocaleString('en-US')} connections: the server may open ${serverNofile.toLocaleString('en-US')} files ` +
        `(hard limit here; raising it needs CAP_SYS_RESOURCE or a higher limit from the caller)`,
    )
  }
  const extraFlags: string[] = []
  if (n > 49_000) {
    extraFlags.push('--max-connections', String(n + 1000))
    notes.push(`--max-connections raised to ${n + 1000} (wirelog's default is 50,000)`)
  }
  say(
    `Scale: ${n.toLocaleString('en-US')} idle connections to one wirelog process (text log), from ${gens} generator(s) over ${all.length} source addresses (${all[0]} …)`,
  )
  for (const note of notes) say(`  note: ${note}`)
  let server: ServerUnderTest | undefined
  let generators: Generators | undefined
  const errors: string[] = []
  let result: Awaited<ReturnType<typeof runIdle>> | undefined
  let log: Awaited<ReturnType<ServerUnderTest['close']>> | undefined
  const t0 = Date.now()
  progress.status(
    () =>
      `scale: ${n.toLocaleString('en-US')} idle connections · ${duration((Date.now() - t0) / 1000)}`,
  )
  try {
    ;[server, generators] = await startPair(
      () =>
        startServer({
          name: 'text',
          config: {
            kind: 'wirelog',
            logging: true,
            format: 'text',
            sync: false,
            heartbeat: o.heartbeat,
            extraFlags,
            maxLifetimeMs: 3_600_000,
          },
          place,
          nofile: serverNofile,
        }),
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
    if (log && log.exitCode !== 0) errors.push(`wirelog exited ${log.exitCode} after SIGTERM`)
  } catch (err) {
    errors.push(await explain(err, server, generators))
  } finally {
    generators?.kill()
    server?.kill()
  }
  progress.done()
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

/** Make uWebSockets.js ready if the run includes it; otherwise drop it from the run with a note. */
function uwsFor(o: Options): UwsStatus | undefined {
  if (!o.servers.some((s) => s.config.kind === 'uws')) return undefined
  const status = prepareUws(o.uwsInstall, (line) => progress.line(line))
  if (!status.available) {
    o.servers = o.servers.filter((s) => s.config.kind !== 'uws')
    say(`note: uWebSockets.js skipped: ${status.note}`)
  }
  return status
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
    // One process holds the idle connections here; more is --scale's job.
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
    cli: resolve(ROOT, 'dist', 'cli.js'),
    serverCpu: pin ? allowed[0] : undefined,
    generatorCpus: pin ? allowed.slice(1) : [],
    generators: o.generators ?? Math.max(1, Math.min(4, allowed.length - 1)),
  }
  const pinNote = pin
    ? `server pinned to CPU ${place.serverCpu}, generators to CPU ${place.generatorCpus.join(',')} (taskset)`
    : `not pinned (${!o.pin ? '--no-pin' : allowed.length < 2 ? 'only one CPU' : 'taskset not found'})`
  // Probe which CPU clock this kernel offers before the header names it.
  cpuSeconds(process.pid)
  const uws = o.profile === 'scale' ? undefined : uwsFor(o)
  const env = environment(o, place, pinNote, uws)
  say(
    `wirelog bench (${o.profile}) — node ${env.node}, ws ${env.ws}${env.bufferutil ? ' + bufferutil' : ' (no bufferutil)'}, ` +
      `${allowed.length} CPU(s): ${env.cpu}`,
  )
  say(
    `${pinNote}; ${place.generators} generator process(es); logs in ${env.tmpdir} (${env.tmpFs}); server CPU from ${cpuClock()}`,
  )
  if (uws?.available) say(`uWebSockets.js: ${uws.note}`)
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
  if (o.profile === 'fanout') return runPubsubOnly(o, place, uws, started)
  return o.profile === 'scale'
    ? runScale(o, place, env, started)
    : runRounds(o, place, env, started, uws)
}

function cleanUp(): void {
  progress.done()
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
    progress.done()
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`)
    killAll()
    process.exitCode = 1
  },
)
