/**
 * The original case study, call for call, written with wirelog:
 *
 *   1. configure logging          5. register the message event (the handler logs the message)
 *   2. create the event handler   6. register the disconnect event
 *   3. create the WebSocket server (timeout 30)
 *   4. register the connect event 7. bind 0.0.0.0:8080 and listen with a backlog of 5
 *                                 8. serve many clients, echo every message, shut down cleanly
 *
 *   npm run example                      # ws://0.0.0.0:8080, log in ./logs/websocket_activity.log
 *   PORT=9000 LOG_DIR=/tmp npm run example
 */
import { createServer } from 'wirelog'

// 1. Configure logging: where the activity log goes and how it looks.
const logging = {
  dir: process.env.LOG_DIR ?? './logs',
  file: 'websocket_activity.log',
  format: 'text' as const,
}

// 3. Create the WebSocket server: `timeout: 30` is the heartbeat interval in seconds (a
//    client that misses two pings in a row is dropped); `backlog: 5` is the case study's
//    `listenSocket(5)`. (The server comes first in code: the event handler hangs off it.)
const server = createServer({
  host: process.env.HOST ?? '0.0.0.0',
  port: Number(process.env.PORT ?? 8080),
  timeout: 30,
  backlog: 5,
  echoPrefix: 'Echo: ',
  log: logging,
})

// 2. The event handler: the bus, and the logger its handlers write their own lines with
//    (`$events->logger->log(…)`). The server records every event itself as well; the
//    handler's lines say whose they are (`[events] …`).
const events = server.events
const logger = server.log.child('events')

// 4. The connect event.
events.register('ws', 'client.connected', (e) => {
  logger.info(`Client connected: ${e.client.ip}`, { clients: server.clients.size })
})

// 5. The message event: the handler logs what it got, as the case study's handler does.
events.register('ws', 'message.received', (e) => {
  logger.info(`Message received: ${e.binary ? `<${e.bytes} bytes>` : e.data}`)
})

// 6. The disconnect event.
events.register('ws', 'client.disconnected', (e) => {
  logger.info(`Client disconnected: ${e.client.ip}`, { code: e.code, messages: e.messagesIn })
})

// 7. Bind to 0.0.0.0:8080 and listen (backlog 5, above).
const address = await server.listen()
console.log(`[app] listening on ws://${address.address}:${address.port}`)

// 8. Serve: every client gets `Echo: <message>` (the default behaviour) until SIGINT or
//    SIGTERM, then shut down gracefully (clients get 1001, every disconnect is logged, the
//    log is flushed).
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close(signal).then(() => console.log('[app] stopped'))
  })
}
