/**
 * CPU per line through the activity-log sink alone, without a server: 2,000,000 json lines of
 * about 150 bytes, handed over in batches between event-loop turns as a busy server does,
 * written to /dev/null so that the sink's own work (encoding, batching, write calls) is what
 * is measured. CPU is user + system time of the whole process (`process.cpuUsage`), thread
 * pool writes included, from the first line until `close()` has resolved. Prints the median
 * of `--runs` runs.
 *
 *   npm run build && npx tsc -p tsconfig.test.json && node .build/bench/sink.js
 *
 * `--old <sink.js>` also measures another build of src/log/sink.ts (e.g. the one of an
 * earlier commit, compiled next to its own node_modules) in the same process, runs
 * alternating, so that both figures come from the same machine state. Other options:
 * `--lines N`, `--runs N`, `--batch N` (lines per event-loop turn), `--file PATH`.
 */
import { setImmediate as turn } from 'node:timers/promises'
import { parseArgs } from 'node:util'

interface SinkLike {
  write(line: string): void
  close(): Promise<void>
  dropped: number
}
interface SinkModule {
  Sink: {
    openFile(
      path: string,
      opts: { sync: boolean; flushInterval: number; maxBuffer: number },
    ): Promise<SinkLike>
  }
}

const { values } = parseArgs({
  options: {
    old: { type: 'string' },
    lines: { type: 'string', default: '2000000' },
    runs: { type: 'string', default: '3' },
    batch: { type: 'string', default: '64' },
    file: { type: 'string', default: '/dev/null' },
  },
})
const LINES = Number(values.lines)
const RUNS = Number(values.runs)
const BATCH = Number(values.batch)

/** Distinct lines shaped like the json format's message line (~150 bytes each). */
const pool = Array.from(
  { length: 1024 },
  (_, i) =>
    `{"level":30,"time":${1764000000000 + i},"event":"message.received","client":"c${i % 50}","ip":"127.0.0.1","msg":"Message received: L-c${i % 50}-m${i}-abcdefgh","bytes":${20 + (i % 9)}}\n`,
)

/** One run: CPU µs per line. */
async function run(mod: SinkModule): Promise<number> {
  const sink = await mod.Sink.openFile(values.file, {
    sync: false,
    flushInterval: 50,
    maxBuffer: 16 * 1024 * 1024,
  })
  const start = process.cpuUsage()
  for (let i = 0; i < LINES; ) {
    for (const end = Math.min(LINES, i + BATCH); i < end; i++) sink.write(pool[i & 1023]!)
    await turn()
  }
  await sink.close()
  const cpu = process.cpuUsage(start)
  if (sink.dropped > 0) throw new Error(`${sink.dropped} lines dropped: the run is not comparable`)
  return (cpu.user + cpu.system) / LINES
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const sinks: Array<[string, SinkModule]> = [
  ['new', (await import('../src/log/sink.js')) as unknown as SinkModule],
]
if (values.old) {
  const { pathToFileURL } = await import('node:url')
  const { resolve } = await import('node:path')
  sinks.unshift(['old', (await import(pathToFileURL(resolve(values.old)).href)) as SinkModule])
}

const bytes = pool.reduce((n, l) => n + Buffer.byteLength(l), 0) / pool.length
console.log(
  `${LINES.toLocaleString('en')} lines of ~${Math.round(bytes)} bytes to ${values.file}, ${BATCH} per event-loop turn, ${RUNS} runs each`,
)
// Warm-up (JIT, file cache) so that the first measured run is not the odd one out.
for (const [, mod] of sinks) await run(mod)
const results = new Map<string, number[]>(sinks.map(([name]) => [name, []]))
for (let r = 0; r < RUNS; r++) {
  for (const [name, mod] of sinks) results.get(name)!.push(await run(mod))
}
for (const [name, xs] of results) {
  console.log(
    `${name.padEnd(4)} ${median(xs).toFixed(3)} µs CPU/line (median; runs ${xs.map((x) => x.toFixed(3)).join(', ')})`,
  )
}
