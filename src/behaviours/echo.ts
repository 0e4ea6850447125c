/**
 * Behaviours: what the server does with a message after it has been logged.
 */
import type { Connection } from '../connection.js'

export type Behaviour = (conn: Connection, raw: Buffer, binary: boolean) => void

/**
 * Echo every message to its sender: binary unchanged, text behind `prefix`. An empty prefix
 * makes a pure echo server. The raw bytes are sent as they came (ws already validated the
 * UTF-8 of text), so no decode/encode round trip.
 */
export function echo(prefix: string): Behaviour {
  if (prefix === '') return (conn, raw, binary) => conn.send(raw, binary)
  const head = Buffer.from(prefix, 'utf8')
  return (conn, raw, binary) => {
    conn.send(binary ? raw : Buffer.concat([head, raw], head.length + raw.length), binary)
  }
}

/** Receive and log only. */
export function silent(): Behaviour {
  return () => {}
}
