/**
 * Plain HTTP requests for the endpoint tests (health, readiness, metrics): a one-shot
 * request over a fresh connection, and a request held half-sent so it can be finished at a
 * chosen moment (e.g. while the server drains, when it no longer accepts connections).
 */
import { request } from 'node:http'
import { connect as netConnect } from 'node:net'

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One request on its own connection (no keep-alive), the whole body collected. */
export function http(
  port: number,
  path: string,
  o: { method?: string; headers?: Record<string, string>; host?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: o.host ?? '127.0.0.1',
        port,
        path,
        method: o.method ?? 'GET',
        headers: o.headers,
        agent: false,
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => {
          body += d
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      },
    )
    req.on('error', reject)
    req.end()
  })
}

export interface HeldRequest {
  /** Send the rest of the request; resolves with the status and body. */
  finish(): Promise<{ status: number; body: string }>
}

/**
 * Open a connection and send all of a GET request but its final empty line. A connection
 * with a request under way is not idle, so a closing server still answers it.
 */
export async function holdRequest(port: number, path: string): Promise<HeldRequest> {
  const socket = netConnect({ host: '127.0.0.1', port })
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`)
  let data = ''
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => {
    data += d
  })
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return {
    async finish() {
      socket.write('\r\n')
      await ended
      const end = data.indexOf('\r\n\r\n')
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(data)
      return { status: m ? Number(m[1]) : 0, body: end < 0 ? '' : data.slice(end + 4) }
    },
  }
}
