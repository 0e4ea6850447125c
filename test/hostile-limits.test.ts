/**
 * Hostile input, part 3: attacks on size and rate. Oversized and bogus lengths, fragment
 * floods, one-byte-per-segment trickles, a permessage-deflate bomb, message floods and a
 * client that stops reading. Each case: the exact close code, one log line saying why,
 * memory bounded, and a bystander (connected throughout) and a fresh client still served.
 *
 * Memory is measured in this process (the server runs in it): live bytes = heapUsed +
 * external after a forced full GC (see `liveBytes()` in frames.ts).
 */
import { strict as assert } from 'node:assert'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { constants, deflateRawSync } from 'node:zlib'
import type { Client } from '../src/index.js'
import {
  assertBelow,
  assertServing,
  clientId,
  closeFrame,
  connectWithId,
  disconnectOf,
  entries,
  entriesOf,
  expectClose,
  frame,
  liveBytes,
  MiB,
  OP,
  peakGrowth,
  rawConnect,
  waitEntries,
  within,
} from './frames.js'
import {
  connect,
  readLines,
  startCli,
  startServer,
  type TestClient,
  type TestServer,
  tempDir,
  waitFor,
  waitForLine,
} from './helpers.js'

const KiB = 1024

/** `n` masked, empty, non-final continuation frames after a non-final text frame: a message that never ends. */
function emptyContinuations(n: number): Buffer {
  const one = frame(OP.CONT, Buffer.alloc(0), { fin: false })
  return Buffer.concat([
    frame(OP.TEXT, Buffer.alloc(0), { fin: false }),
    ...Array<Buffer>(n).fill(one),
  ])
}

/** A 64-bit length with the top bit set (2^63), no body. */
const topBitLength = (): Buffer => frame(OP.BINARY, Buffer.alloc(0), { length: 1n << 63n })
/** A header announcing 2 GiB, no body. */
const twoGiB = (): Buffer => frame(OP.BINARY, Buffer.alloc(0), { length: 2 ** 31 })

describe('size attacks (maxPayload 1 MiB)', () => {
  let t: TestServer
  let bystander: TestClient
  before(async () => {
    t = await startServer({ log: { format: 'json' } })
    bystander = await connect(t.url)
  })
  after(async () => {
    bystander.ws.close()
    await t.stop()
  })

  it('a 64-bit length with the top bit set → 1009 at once', async () => {
    await expectClose(t, bystander, topBitLength(), 1009, /payload length > 2\^53 - 1/)
  })

  it('a header announcing 2 GiB with no body → 1009 at once, nothing allocated for it', async (ctx) => {
    const { peak } = await peakGrowth(() =>
      expectClose(t, bystander, twoGiB(), 1009, /Max payload size exceeded/),
    )
    // (The trickled variant below shows "at once" in bytes: the close comes on the length's last byte.)
    assertBelow(ctx, 'peak live memory growth', peak, 4 * MiB)
  })

  it('a 2 GiB announcement split as a fragmented message (1 MiB − 1 then 2 GiB) → 1009', async () => {
    const first = frame(OP.BINARY, Buffer.alloc(MiB - 1, 0x61), { fin: false })
    const second = frame(OP.CONT, Buffer.alloc(0), { length: 2 ** 31 })
    await expectClose(
      t,
      bystander,
      Buffer.concat([first, second]),
      1009,
      /Max payload size exceeded/,
    )
  })

  it('200,000 empty continuation frames → 1008 after the fragment cap, memory bounded', async (ctx) => {
    const bytes = emptyContinuations(200_000)
    const { peak } = await peakGrowth(() =>
      expectClose(t, bystander, bytes, 1008, /Too many message fragments/),
    )
    // The 1.2 MB of attack bytes are this process's own; the server keeps no per-fragment state.
    assertBelow(ctx, 'peak live memory growth', peak, 8 * MiB)
  })
})

describe('the same attacks, one byte per TCP write (maxPayload 64 KiB, maxFragments 200)', () => {
  let t: TestServer
  let bystander: TestClient
  before(async () => {
    t = await startServer({
      log: { format: 'json' },
      limits: { maxPayload: 64 * KiB, maxFragments: 200 },
    })
    bystander = await connect(t.url)
  })
  after(async () => {
    bystander.ws.close()
    await t.stop()
  })

  it('64-bit top-bit length, trickled → 1009 on its last length byte', async () => {
    const r = await expectClose(t, bystander, topBitLength(), 1009, /payload length/, {
      trickle: true,
    })
    // Byte 10 completes the length; the close frame may take a write or two to come back.
    assert.ok(r.written < 14, `closed after ${r.written} bytes: before the mask key was complete`)
  })

  it('2 GiB header, trickled → 1009 on its last length byte', async () => {
    const r = await expectClose(t, bystander, twoGiB(), 1009, /Max payload size exceeded/, {
      trickle: true,
    })
    assert.ok(r.written < 14, `closed after ${r.written} bytes: before the mask key was complete`)
  })

  it('empty continuation frames, trickled → 1008 after maxFragments', async () => {
    const r = await expectClose(
      t,
      bystander,
      emptyContinuations(1000),
      1008,
      /Too many message fragments/,
      { trickle: true },
    )
    // 6 bytes per frame; the 201st fragment is refused.
    assert.ok(r.written <= 6 * 202, `closed after ${r.written} bytes`)
  })

  it('a frame within maxPayload whose body comes one byte per TCP write → 1008 (read-chunk cap), memory bounded', async (ctx) => {
    // Each 1-byte socket read the server holds costs ~200 bytes; ws's default cap (262,144
    // chunks) would let one connection pin ~50 MB this way.
    // The frame announces 60 KiB; at most the first 8 KiB are trickled (8× the cap).
    const bytes = frame(OP.BINARY, Buffer.alloc(60 * KiB, 0x62)).subarray(0, 8 * KiB)
    const { peak, result } = await peakGrowth(() =>
      expectClose(t, bystander, bytes, 1008, /Too many buffered chunks/, { trickle: true }),
    )
    assert.ok(
      result.written < 2048,
      `closed after ${result.written} one-byte writes (cap: 1024 held reads)`,
    )
    assertBelow(ctx, 'peak live memory growth', peak, 4 * MiB)
  })
})

describe('permessage-deflate (maxPayload 1 MiB)', () => {
  let t: TestServer
  let bystander: TestClient
  before(async () => {
    t = await startServer({
      log: { format: 'json' },
      perMessageDeflate: { threshold: 1024, level: 1 },
    })
    bystander = await connect(t.url)
  })
  after(async () => {
    bystander.ws.close()
    await t.stop()
  })
  const ext = {
    connect: {
      headers: ['Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover'],
    },
  }
  /** Raw DEFLATE ending in a sync flush, minus its 00 00 ff ff tail (RFC 7692 §7.2.1). */
  const deflate = (b: Buffer): Buffer => {
    const z = deflateRawSync(b, { level: 9, finishFlush: constants.Z_SYNC_FLUSH })
    assert.equal(z.subarray(-4).toString('hex'), '0000ffff')
    return z.subarray(0, z.length - 4)
  }

  it('is negotiated, and a small compressed message is echoed', async () => {
    const ok = await rawConnect(t.port, ext.connect)
    assert.match(ok.responseHeaders, /sec-websocket-extensions: permessage-deflate/i)
    ok.write(frame(OP.TEXT, deflate(Buffer.from('squeezed')), { rsv: 0x40 }))
    assert.equal((await ok.waitMessages(1))[0]!.toString(), 'Echo: squeezed')
    ok.write(closeFrame(1000))
    await ok.ended
  })

  it('a bomb inflating past maxPayload → 1009 as soon as the limit is passed, the rest never inflated', async (ctx) => {
    const bomb = deflate(Buffer.alloc(64 * MiB))
    assert.ok(bomb.length < 80 * KiB, `the bomb is ${bomb.length} bytes`)
    const { peak, after, result } = await peakGrowth(() =>
      expectClose(
        t,
        bystander,
        frame(OP.BINARY, bomb, { rsv: 0x40 }),
        1009,
        /Max payload size exceeded/,
        { ...ext, withinMs: 3000 },
      ),
    )
    ctx.diagnostic(
      `${bomb.length} bytes on the wire, 64 MiB if inflated; closed after ${result.close.at} ms`,
    )
    // Inflating the whole bomb would hold 64 MiB; stopping at the limit holds about 1 MiB.
    assertBelow(ctx, 'peak live memory growth', peak, 8 * MiB)
    assertBelow(ctx, 'live memory growth after GC', after, 4 * MiB)
  })

  it('invalid UTF-8 in the first compressed fragment → 1007 at once (checked after inflating)', async () => {
    const first = frame(OP.TEXT, deflate(Buffer.from([0x61, 0xff, 0x62])), {
      fin: false,
      rsv: 0x40,
    })
    // No more fragments ever come: a server that waits for the end of the message never closes.
    await expectClose(t, bystander, first, 1007, /invalid UTF-8/, ext)
  })
})

describe('floods: inbound rate limit (10 msgs/s, burst 20)', () => {
  it("rateLimitAction 'close' → 1008 after the burst, one disconnect line, no line per refused message", async () => {
    const t = await startServer({
      log: { format: 'json' },
      limits: { rateLimit: 10, rateLimitAction: 'close' },
    })
    const bystander = await connect(t.url)
    try {
      const a = await connectWithId(t)
      const id = a.id
      for (let i = 0; i < 500; i++) a.ws.send(`flood ${i}`)
      const [code, reason] = await within(a.closed, 2000, 'the flooding client to be closed')
      assert.equal(code, 1008)
      assert.match(reason, /rate limit exceeded \(10 messages\/s\)/)
      const d = await disconnectOf(t, id)
      assert.equal(d.code, 1008)
      await assertServing(t, bystander)
      const mine = entriesOf(t, id)
      const received = mine.filter((e) => e.event === 'message.received').length
      assert.ok(received >= 20 && received <= 30, `${received} of 500 admitted (burst 20 + refill)`)
      assert.equal(
        mine.length,
        received + 2,
        'connect + admitted messages + one disconnect: nothing per refused message',
      )
    } finally {
      bystander.ws.close()
      await t.stop()
    }
  })

  it("rateLimitAction 'drop' → excess dropped, client kept, one message.dropped line per window", async () => {
    const t = await startServer({
      log: { format: 'json' },
      limits: { rateLimit: 10, rateLimitAction: 'drop' },
    })
    const bystander = await connect(t.url)
    try {
      const a = await connectWithId(t)
      const id = a.id
      const dropped = (): number[] =>
        entriesOf(t, id)
          .filter((e) => e.event === 'message.dropped')
          .map((e) => e.count as number)
      for (let i = 0; i < 300; i++) a.ws.send(`flood ${i}`)
      const [first] = await waitEntries(
        t,
        (e) => e.event === 'message.dropped' && e.client === id,
        'first message.dropped',
        1,
        3000,
      )
      // The window is reported after it closes, so by now every message of the burst was handled.
      const echoed = a.received.length
      assert.ok(echoed >= 20 && echoed <= 30, `${echoed} of 300 echoed (burst 20 + refill)`)
      assert.equal(first!.count, 300 - echoed, 'the one line counts every dropped message')
      assert.equal(a.ws.readyState, 1, 'the client stays connected')
      // A second burst: a second window, a second line (not 300 lines).
      for (let i = 0; i < 100; i++) a.ws.send(`again ${i}`)
      await waitEntries(
        t,
        (e) => e.event === 'message.dropped' && e.client === id,
        'second message.dropped',
        2,
        3000,
      )
      await assertServing(t, bystander)
      const counts = dropped()
      assert.equal(counts.length, 2, `one line per window: ${JSON.stringify(counts)}`)
      assert.equal(
        counts[0]! + counts[1]! + a.received.length,
        400,
        'every message is either echoed or counted as dropped',
      )
      a.ws.close()
      await a.closed
    } finally {
      bystander.ws.close()
      await t.stop()
    }
  })
})

describe('slow readers: outbound buffer cap', () => {
  it('a slow consumer that keeps flooding after its 4000 is read no further: bounded lines', async (ctx) => {
    // The server in a process of its own, as in production: it reads as fast as its core
    // allows while the closing handshake waits for a peer that never reads.
    const dir = tempDir()
    const cli = await startCli(['--log-dir', dir, '--log-file', 'a.log', '--log-format', 'json'])
    try {
      const c = await rawConnect(cli.port)
      c.socket.pause() // never read: the server's queue for us grows until it gives up (8 MiB)
      const msg = frame(OP.TEXT, 'f'.repeat(1024))
      let sent = 0
      const deadline = Date.now() + 4000
      // Keep writing as fast as TCP takes it, through the close, until the server cuts TCP.
      while (!c.socket.destroyed && Date.now() < deadline) {
        if (!c.socket.write(msg)) {
          await Promise.race([
            new Promise((r) => c.socket.once('drain', r)),
            c.ended,
            new Promise((r) => setTimeout(r, 200)),
          ])
        }
        sent++
      }
      const log = join(dir, 'a.log')
      const [gone] = await waitForLine(log, /"event":"client.disconnected"/)
      assert.equal((JSON.parse(gone!) as { code: number }).code, 4000)
      const lines = readLines(log).filter((l) => l.includes('"event":"message.received"')).length
      ctx.diagnostic(`${sent} messages written, ${lines} logged`)
      // What the server read before it gave up (8 MiB of echoes plus the kernel buffers) is
      // logged; what the peer sends after the close is not read, so not logged. Without that
      // a second of flooding is logged too: some 100,000 more lines here.
      assert.ok(lines < 40_000, `${lines} message lines for a client closed as a slow consumer`)
    } finally {
      cli.proc.kill('SIGTERM')
      await cli.exited
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a client that stops reading is closed with 4000 once its queue passes maxBufferedBytes; memory bounded', async (ctx) => {
    const cap = 256 * KiB
    const t = await startServer({
      log: { format: 'json' },
      echoPrefix: '',
      limits: { maxBufferedBytes: cap },
    })
    const bystander = await connect(t.url)
    try {
      const c = await rawConnect(t.port)
      const id = await clientId(t, c.port)
      const server = [...t.server.clients].find((x) => x.id === id) as Client
      let gone = false
      const disconnected = new Promise<void>((resolve) => {
        t.server.events.on('ws', 'client.disconnected', (e) => {
          if (e.client.id !== id) return
          gone = true
          resolve()
        })
      })
      c.socket.pause() // stop reading: the kernel buffers fill, then the server's queue grows
      const msg = frame(OP.BINARY, Buffer.alloc(64 * KiB, 0x63))
      const limit = 64 * MiB
      let sent = 0
      let maxQueued = 0
      let maxLive = 0
      const base = liveBytes()
      // Until the server decides (its side of the client leaves OPEN), or 64 MiB without a decision.
      while (server.readyState === 1 && sent < limit) {
        // Wait for room, unless the server has given up on us (then no 'drain' ever comes).
        if (!c.socket.write(msg)) {
          await Promise.race([new Promise((r) => c.socket.once('drain', r)), c.ended, disconnected])
        }
        sent += msg.length
        maxQueued = Math.max(maxQueued, server.bufferedAmount)
        if (sent % MiB < msg.length) maxLive = Math.max(maxLive, liveBytes() - base)
        if (c.socket.destroyed) break
        await new Promise((r) => setImmediate(r))
      }
      assert.ok(
        sent < limit,
        `the server never gave up on the slow consumer (${(sent / MiB).toFixed(0)} MiB sent)`,
      )
      await waitFor(
        () => gone,
        `the slow consumer to be disconnected (sent ${(sent / MiB).toFixed(1)} MiB)`,
        3000,
      )
      const d = await disconnectOf(t, id)
      assert.equal(d.code, 4000)
      assert.match(String(d.reason), /slow consumer/)
      assert.equal(d.initiator, 'server')
      // The queue never held more than the cap plus the one message that crossed it.
      ctx.diagnostic(
        `sent ${(sent / MiB).toFixed(1)} MiB before the server gave up; most queued for the client: ${maxQueued} bytes`,
      )
      assert.ok(maxQueued <= cap + msg.length, `max queued ${maxQueued} bytes (cap ${cap})`)
      assertBelow(ctx, 'peak live memory growth', maxLive, 8 * MiB)
      // The TCP connection is gone: reading again yields the buffered echoes, then the end.
      c.socket.resume()
      await within(c.ended, 3000, 'the slow consumer’s connection to end')
      await assertServing(t, bystander, '')
      assert.equal(entriesOf(t, id).filter((e) => e.event === 'client.disconnected').length, 1)
      assert.equal(
        entries(t).filter((e) => e.event === 'client.disconnected' && e.code === 4000).length,
        1,
        'only the slow client',
      )
    } finally {
      bystander.ws.close()
      await t.stop()
    }
  })
})
