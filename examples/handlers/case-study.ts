/**
 * The case study's message handler, as a handler module: every message the server receives
 * is written to the activity log by the handler itself (`$events->register('ws',
 * 'message.received', …)` → `log("Message received: …")`).
 *
 *   npx wirelog --handler examples/handlers/case-study.ts
 *
 * The handler's lines say whose they are: `[case-study] Message received: Hello Server`,
 * after the server's own `Message received: Hello Server` line.
 */
import type { HandlerSetup } from 'wirelog'

const setup: HandlerSetup = (server) => {
  const log = (msg: string): void => server.log.child('case-study').info(msg)
  server.events.register('ws', 'message.received', (e) =>
    log(`Message received: ${e.binary ? `<${e.bytes} bytes>` : e.data}`),
  )
}

export default setup
