/**
 * Child process of the sink tests that need a process of their own: memory measured with
 * `--expose-gc` (nothing else of the test runner's heap in the figures), and a stdout whose
 * reader goes away. Prints one JSON result line on stderr.
 *
 *   node --expose-gc .build/test/sink-child.js memory-sink
 *   node --expose-gc .build/test/sink-child.js memory-server
 *   node .build/test/sink-child.js epipe        (the parent closes its end of stdout)
 */
import { ActivityLog, createServer, resolveConfig, type WirelogOptions } from '../src/index.js'
import { Sink } from '../src/log/sink.js'
import { startLoad } from './durability-helpers.js'

const KiB = 1024

/** Retained ArrayBuffer bytes, after a full collection when `--expose-gc` gave us `gc`. */
function arrayBuffers(): number {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  return process.memoryUsage().arrayBuffers
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

function line(i: number): string {
  // About 150 bytes, like a json message line.
  return `{"level":30,"time":1764000000000,"event":"message.received","client":"c${i % 97}","ip":"127.0.0.1","msg":"Message received: m${i}","bytes":12}\n`
}

function result(r: Record<string, unknown>): void {
  process.stderr.write(`RESULT ${JSON.stringify(r)}\n`)
}

/** Many one-line flushes into a device that refuses every write. */
async function memorySink(): Promise<void> {
  const maxBuffer = 512 * KiB
  const sink = await Sink.openFile('/dev/full', {
    sync: false,
    flushInterval: 60_000,
    maxBuffer,
    onError: () => {},
  })
  const before = arrayBuffers()
  let maxBuffered = 0
  for (let i = 0; i < 8000; i++) {
    sink.write(line(i))
    sink.flush()
    maxBuffered = Math.max(maxBuffered, sink.buffered)
    // Let the failed write come back between flushes, as time passes in a server.
    await tick()
  }
  const retained = arrayBuffers() - before
  result({ maxBuffer, retained, maxBuffered, dropped: sink.dropped, errors: sink.errors })
  process.exit(0)
}

/** The server under load with its log on /dev/full, flushing every millisecond. */
async function memoryServer(): Promise<void> {
  const maxBuffer = 256 * KiB
  const opts: WirelogOptions = {
    host: '127.0.0.1',
    port: 0,
    log: { dir: '/dev', file: 'full', format: 'json', maxBuffer, flushInterval: 1 },
  }
  const reports: string[] = []
  const log = new ActivityLog(resolveConfig(opts).log, (m) => reports.push(m))
  const server = createServer(opts, { activityLog: log })
  const addr = await server.listen()
  const load = await startLoad(`ws://127.0.0.1:${addr.port}`, {
    clients: 4,
    window: 1,
    maxPerClient: 1500,
    pad: 100,
    tag: 'G',
  })
  load.stop()
  await load.settle()
  const before = arrayBuffers()
  const base = load.echoes()
  load.resume()
  await load.waitEchoes(base + 5000, 60_000)
  load.stop()
  await load.settle()
  const retained = arrayBuffers() - before
  const stats = server.activityLog!.stats
  result({ maxBuffer, retained, ...stats, reports: reports.length })
  process.exit(0)
}

/** Log to stdout; the parent closes its end of the pipe after the first line. */
async function epipe(): Promise<void> {
  const codes: string[] = []
  let uncaught = 0
  process.on('uncaughtException', () => uncaught++)
  const sink = Sink.fd(1, {
    sync: false,
    flushInterval: 5,
    maxBuffer: 1024 * KiB,
    onError: (err) => codes.push(err.code ?? err.message),
  })
  let i = 0
  const logSome = async (ms: number, stopEarly: () => boolean): Promise<void> => {
    const until = Date.now() + ms
    while (Date.now() < until && !stopEarly()) {
      sink.write(line(i++))
      if (i % 10 === 0) sink.flush()
      await new Promise((r) => setTimeout(r, 2))
    }
  }
  // Until the write error shows (at most 10 s), then as long again as two retry intervals.
  await logSome(10_000, () => codes.length > 0)
  await logSome(2500, () => false)
  const errorsBeforeClose = sink.errors
  const closeStarted = Date.now()
  await sink.close()
  result({
    codes,
    errors: errorsBeforeClose,
    dropped: sink.dropped,
    buffered: sink.buffered,
    lines: i,
    closeMs: Date.now() - closeStarted,
    uncaught,
  })
}

const mode = process.argv[2]
const run = { 'memory-sink': memorySink, 'memory-server': memoryServer, epipe }[mode ?? '']
if (run === undefined) {
  process.stderr.write(`unknown mode ${mode}\n`)
  process.exit(2)
}
await run()
