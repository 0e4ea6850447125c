/**
 * A chat relay: every message a client sends goes to every other connected client, text as
 * text, binary as binary. Run it with `--behaviour silent`, so the sender does not also get
 * its own message echoed back:
 *
 *   npx wirelog --behaviour silent --handler examples/handlers/chat-relay.ts
 *
 * Clients that negotiated a subprotocol (`wirelog.v1` speaks JSON frames) are left out, and
 * so is a message whose sender is already being closed (e.g. by a moderation handler set
 * up before this one).
 */
import type { HandlerSetup } from 'wirelog'

export const setup: HandlerSetup = (server) => {
  const log = server.log.child('chat')
  server.events.register('ws', 'message.received', (e) => {
    if (e.client.readyState !== 1 || e.client.protocol) return
    let recipients = 0
    for (const other of server.clients) {
      if (other === e.client || other.protocol || other.readyState !== 1) continue
      if (other.send(e.data) === 'sent') recipients++
    }
    log.debug('relayed', { from: e.client.id, recipients })
  })
}
