/**
 * A moderation filter: a client whose message contains a word of the list is closed with
 * 1008 (policy violation), and the activity log says why (`[moderation] closing abusive
 * client … word=…`, then the server's own `Client disconnected: … code=1008`).
 *
 *   MODERATION_WORDS=spam,scam npx wirelog --handler examples/handlers/moderation.ts
 *
 * Words are matched whole, ignoring case (`SPAM!` matches `spam`, `spammer` does not).
 * Set it up before a relay (`--handler moderation.ts --handler chat-relay.ts`) and the
 * abusive message is not relayed: handlers run in the order their modules were given.
 */
import { CloseCode, type HandlerSetup } from 'wirelog'

const DEFAULT_WORDS = ['idiot', 'stupid', 'scam']

const words = (process.env.MODERATION_WORDS ?? DEFAULT_WORDS.join(','))
  .split(',')
  .map((w) => w.trim().toLowerCase())
  .filter((w) => w.length > 0)

/** The first listed word in `text`, compared as whole words (letters and digits). */
function abusive(text: string): string | undefined {
  const seen = new Set(
    text
      .toLowerCase()
      .normalize('NFKC')
      .split(/[^\p{L}\p{N}]+/u),
  )
  return words.find((w) => seen.has(w))
}

const setup: HandlerSetup = (server) => {
  const log = server.log.child('moderation')
  server.events.register('ws', 'message.received', (e) => {
    if (e.binary || e.client.readyState !== 1) return
    const word = abusive(e.data as string)
    if (word === undefined) return
    log.warn(`closing abusive client ${e.client.ip}`, { client: e.client.id, word })
    e.client.close(CloseCode.POLICY_VIOLATION, 'abusive language')
  })
}

export default setup
