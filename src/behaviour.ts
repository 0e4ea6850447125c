/**
 * Behaviours: what the server does with a client's messages once they are recorded.
 *
 * A behaviour is a plain object. The server picks one per connection: the one registered
 * for the subprotocol the client negotiated (`protocols` option), else the default
 * (`behaviour` option: `echo` unless configured). It talks to clients only through `Client`
 * (`send`, `close`), never to the socket.
 *
 * Call order for a connection: `open` after `client.connected` is recorded and its
 * handlers ran; `message` after `message.received` is recorded and its handlers ran;
 * `close` after `client.disconnected`. A behaviour that throws is reported as
 * `handler.failed` like any handler; the client and the server carry on.
 */
import type { Client } from './connection.js'
import type { ClientDisconnected } from './events.js'
import type { WirelogServer } from './server.js'

export interface Behaviour {
  /** Shown in logs and errors. */
  readonly name: string
  /** Called once, when the server starts listening. */
  attach?(server: WirelogServer): void | Promise<void>
  /** A client using this behaviour connected. */
  open?(client: Client): void
  /** A whole message from the client: the raw bytes (text is valid UTF-8). */
  message(client: Client, data: Buffer, binary: boolean): void
  /** The client disconnected. */
  close?(client: Client, info: ClientDisconnected): void
  /** The server is closing (clients are still connected). */
  detach?(): void | Promise<void>
}

/** Whether `v` looks like a behaviour (for option validation). */
export function isBehaviour(v: unknown): v is Behaviour {
  return (
    v !== null &&
    typeof v === 'object' &&
    typeof (v as Behaviour).message === 'function' &&
    typeof (v as Behaviour).name === 'string'
  )
}
