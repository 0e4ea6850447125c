/**
 * The original case study, written with wirelog: configure logging, create the server and
 * its event handlers, register the three events, bind to 0.0.0.0:8080, serve many clients
 * and echo every message.
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

// 2. Create the server: echo with the "Echo: " prefix; `timeout: 30` is the heartbeat
//    interval in seconds (a client that misses two pings in a row is dropped).
const server = createServer({
  host: process.env.HOST ?? '0.0.0.0',
  port: Number(process.env.PORT ?? 8080),
  timeout: 30,
  echoPrefix: 'Echo: ',
  log: logging,
})

// 3. The event handler: register the three events of the case study. The activity log
//    already records each of them; these handlers are the application's own reaction.
const { events } = server
events.register('ws', 'client.connected', (e) => {
  console.log(`[app] hello ${e.client.ip} (${e.client.id}); ${server.clients.size} connected`)
})
events.register('ws', 'message.received', (e) => {
  console.log(`[app] ${e.client.id} said: ${e.binary ? `<${e.bytes} bytes>` : e.data}`)
})
events.register('ws', 'client.disconnected', (e) => {
  console.log(
    `[app] bye ${e.client.ip} (code ${e.code}, ${e.messagesIn} messages in ${e.durationMs} ms)`,
  )
})

// Application events go through the same bus and into the same log.
events.register('app', 'milestone', (e) =>
  console.log(`[app] milestone: ${String(e.clients)} clients`),
)
events.register('ws', 'client.connected', () => {
  if (server.clients.size % 100 === 0)
    events.trigger('app', 'milestone', { clients: server.clients.size })
})

// 4. Bind and serve until SIGINT/SIGTERM, then shut down gracefully (clients get 1001,
//    every disconnect is logged, the log is flushed).
const address = await server.listen()
console.log(`[app] listening on ws://${address.address}:${address.port}`)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close(signal).then(() => console.log('[app] stopped'))
  })
}
