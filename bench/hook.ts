/**
 * Preloaded into the wirelog processes the bench runs (`node --expose-gc --import <this>
 * dist/cli.js …`). They are the real CLI and take no commands, so this adds the two the
 * harness needs, neither of them on the message path:
 *
 * - on SIGUSR2, a full GC, then `{ type: 'gc', rss, heapUsed }` on stdout (wirelog writes
 *   nothing there without --log-stdout), for the RSS-per-connection figure;
 * - an end of its own: SIGTERM to itself (wirelog's graceful shutdown) when its stdin closes
 *   (the orchestrator is done or died) or after BENCH_LIFETIME_MS.
 */
import { writeSync } from 'node:fs'

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc
  if (g) {
    // Twice: the first pass can leave work (weak callbacks, finalizers) for a second.
    g()
    g()
  }
}

process.on('SIGUSR2', () => {
  gc()
  const m = process.memoryUsage()
  writeSync(1, `${JSON.stringify({ type: 'gc', rss: m.rss, heapUsed: m.heapUsed })}\n`)
})

let ending = false
// A signal from the orchestrator already started the shutdown; a second one would cut it short.
for (const sig of ['SIGTERM', 'SIGINT'] as const)
  process.on(sig, () => {
    ending = true
  })

function end(why: string): void {
  if (ending) return
  ending = true
  if (why) process.stderr.write(`bench hook: ${why}; shutting down\n`)
  process.kill(process.pid, 'SIGTERM')
  // Should the graceful shutdown hang, leave anyway.
  setTimeout(() => process.exit(1), 30_000).unref()
}

const lifetime = Number(process.env.BENCH_LIFETIME_MS)
if (lifetime > 0) setTimeout(() => end(`lived past its limit of ${lifetime} ms`), lifetime).unref()

process.stdin.on('end', () => end(''))
process.stdin.on('error', () => end(''))
process.stdin.resume()
// Watching stdin must not keep the process alive by itself.
;(process.stdin as unknown as { unref?: () => void }).unref?.()
