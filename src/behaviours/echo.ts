/**
 * The built-in behaviours: echo (the default) and silent.
 */
import type { Behaviour } from '../behaviour.js'

/**
 * Echo every message to its sender: binary unchanged, text behind `prefix` (default
 * `"Echo: "`). An empty prefix makes a pure echo server. The raw bytes are sent as they came
 * (ws already validated the UTF-8 of text), so there is no decode/encode round trip.
 */
export function echo(prefix = 'Echo: '): Behaviour {
  if (prefix === '')
    return {
      name: 'echo',
      message: (client, data, binary) => {
        client.send(data, binary)
      },
    }
  const head = Buffer.from(prefix, 'utf8')
  return {
    name: 'echo',
    message: (client, data, binary) => {
      client.send(binary ? data : Buffer.concat([head, data], head.length + data.length), binary)
    },
  }
}

/** Receive and log only. */
export function silent(): Behaviour {
  return { name: 'silent', message: () => {} }
}
