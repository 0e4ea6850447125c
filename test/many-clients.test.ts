import { strict as assert } from 'node:assert'
import { describe, it } from 'node:test'
import { connect, startServer, type TestClient, waitForLine } from './helpers.js'

const CLIENTS = 200
const MESSAGES = 20

describe('many clients', () => {
  it(`${CLIENTS} concurrent clients × ${MESSAGES} messages each get exactly their own echoes, in order, all logged`, async () => {
    const t = await startServer({ log: { format: 'json' } })
    try {
      const clients: TestClient[] = await Promise.all(
        Array.from({ length: CLIENTS }, () => connect(t.url)),
      )
      assert.equal(t.server.clients.size, CLIENTS)
      // All clients send concurrently, interleaving on the server.
      for (let m = 0; m < MESSAGES; m++) {
        for (const [i, c] of clients.entries()) c.ws.send(`client ${i} message ${m}`)
      }
      await Promise.all(clients.map((c) => c.waitMessages(MESSAGES, 20_000)))
      for (const [i, c] of clients.entries()) {
        assert.deepEqual(
          c.received,
          Array.from({ length: MESSAGES }, (_, m) => `Echo: client ${i} message ${m}`),
        )
      }
      for (const c of clients) c.ws.close()
      await Promise.all(clients.map((c) => c.closed))
      await waitForLine(t.logPath, /"event":"client.disconnected"/, CLIENTS, 20_000)
      const objs = t
        .lines()
        .map((l) => JSON.parse(l) as { event: string; client?: string; msg: string })
      const count = (e: string) => objs.filter((o) => o.event === e).length
      assert.equal(count('client.connected'), CLIENTS)
      assert.equal(count('message.received'), CLIENTS * MESSAGES)
      assert.equal(count('client.disconnected'), CLIENTS)
      // Per client, the log holds connect, its messages in order, then disconnect.
      const byClient = new Map<string, string[]>()
      for (const o of objs) {
        if (!o.client) continue
        const list = byClient.get(o.client) ?? []
        list.push(o.event === 'message.received' ? o.msg : o.event)
        byClient.set(o.client, list)
      }
      assert.equal(byClient.size, CLIENTS)
      for (const seq of byClient.values()) {
        assert.equal(seq[0], 'client.connected')
        assert.equal(seq[seq.length - 1], 'client.disconnected')
        const i = /client (\d+) /.exec(seq[1]!)![1]
        assert.deepEqual(
          seq.slice(1, -1),
          Array.from({ length: MESSAGES }, (_, m) => `Message received: client ${i} message ${m}`),
        )
      }
    } finally {
      await t.stop()
    }
  })
})
