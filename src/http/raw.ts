/**
 * HTTP responses written straight to a socket: the answer to an upgrade refused before the
 * 101 (the socket is no longer in Node's HTTP machinery at that point).
 */
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'

/** Write a complete HTTP error response on a socket that asked to upgrade, then close it. */
export function rejectUpgrade(
  socket: Duplex,
  status: number,
  message: string,
  extraHeaders: Readonly<Record<string, string>> = {},
): void {
  if (socket.writable) {
    const body = `${message}\n`
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`
    for (const [k, v] of Object.entries(extraHeaders)) {
      // Header values come from hooks: never let one end the header block.
      if (/[\r\n]/.test(k) || /[\r\n]/.test(v)) continue
      head += `${k}: ${v}\r\n`
    }
    socket.end(`${head}\r\n${body}`)
  }
  // end() flushes then closes; destroy soon after in case the peer never reads.
  setTimeout(() => socket.destroy(), 1000).unref()
}
