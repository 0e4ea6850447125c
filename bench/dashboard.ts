/**
 * What the dashboard costs per event: `message.received` dispatched through an `EventBus`
 * without the dashboard's feed, with the feed and no page watching, and the cost of one tail
 * row (built only while a page watches, at most 1,000 a second).
 *
 * `npm run build && tsc -p tsconfig.test.json && node .build/bench/dashboard.js`
 */
import type { Client } from '../src/connection.js'
import { EventBus, emit, type MessageReceived } from '../src/events.js'
import { describe } from '../src/http/dashboard/describe.js'
import { DashboardFeed } from '../src/http/dashboard/feed.js'
import { createRedactor } from '../src/redact.js'

const N = 2_000_000
const client = {
  id: 'bench-1',
  ip: '127.0.0.1',
  protocol: '',
  user: undefined,
  messagesIn: 0,
  messagesOut: 0,
  bytesIn: 0,
  bytesOut: 0,
} as unknown as Client
const raw = Buffer.from('x'.repeat(64))
const message: MessageReceived = { client, raw, data: raw.toString(), binary: false, bytes: 64 }
const redact = createRedactor()

function perEvent(withFeed: boolean): number {
  const bus = new EventBus()
  const feed = withFeed
    ? new DashboardFeed({
        events: bus,
        clients: new Set(),
        logStats: () => undefined,
        info: () => ({}),
        redact,
      })
    : undefined
  for (let i = 0; i < 100_000; i++) emit(bus, 'message.received', message)
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) emit(bus, 'message.received', message)
  const ns = Number(process.hrtime.bigint() - t0) / N
  feed?.close()
  return ns
}

function perRow(): number {
  for (let i = 0; i < 100_000; i++) describe('ws', 'message.received', message, redact)
  const n = N / 4
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) describe('ws', 'message.received', message, redact)
  return Number(process.hrtime.bigint() - t0) / n
}

for (let round = 1; round <= 3; round++) {
  const off = perEvent(false)
  const on = perEvent(true)
  const row = perRow()
  console.log(
    `round ${round}: bus alone ${off.toFixed(1)} ns/event · with the dashboard, nobody watching ${on.toFixed(1)} ns/event · one tail row ${row.toFixed(0)} ns`,
  )
}
