/**
 * Plain HTTP: the health endpoint, the answer to non-WebSocket requests, and raw HTTP
 * responses for upgrades refused before the 101.
 */
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'

export interface HealthInfo {
  state: string
  clients: number
}

/** Answer a non-upgrade request: `/health` is JSON, everything else says "use WebSocket". */
export function handleHttpRequest(
  req: IncomingMessage,
  res: ServerResponse,
  health: () => HealthInfo,
): void {
  const url = req.url ?? '/'
  if (req.method === 'GET' && (url === '/health' || url.startsWith('/health?'))) {
    const h = health()
    const body = JSON.stringify({ status: h.state === 'RUNNING' ? 'ok' : 'closing', ...h })
    res.writeHead(h.state === 'RUNNING' ? 200 : 503, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
    })
    res.end(body)
    return
  }
  const body = 'wirelog: this is a WebSocket endpoint; connect with a WebSocket client.\n'
  res.writeHead(426, {
    upgrade: 'websocket',
    connection: 'Upgrade',
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  })
  res.end(body)
}

/** Write a complete HTTP error response on a socket that asked to upgrade, then close it. */
export function rejectUpgrade(
  socket: Duplex,
  status: number,
  message: string,
  extraHeaders: Record<string, string> = {},
): void {
  if (socket.writable) {
    const body = `${message}\n`
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`
    for (const [k, v] of Object.entries(extraHeaders)) head += `${k}: ${v}\r\n`
    socket.end(`${head}\r\n${body}`)
  }
  // end() flushes then closes; destroy soon after in case the peer never reads.
  setTimeout(() => socket.destroy(), 1000).unref()
}
