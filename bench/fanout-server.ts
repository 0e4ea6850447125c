/**
 * Reference fan-out servers for `npm run bench -- --fanout` (a child process of fanout.ts).
 * A client that sends `sub` is a subscriber of the one topic (answered `ok`); any other text
 * message is published to every subscriber. None logs, pings or caps anything:
 *
 * - `ws-loop`: a bare `ws` server, `ws.send()` to each subscriber in turn (what a first
 *   version of a chat server does: each send frames the message again and is its own write);
 * - `ws-frame-cork`: the frame is built once (`WebSocket.Sender.frame`, public API) and the
 *   same buffer written to each subscriber's socket, corked for the rest of the tick;
 * - `uws`: uWebSockets.js's own topic `publish` (the `uwebsockets` repackage from the cache
 *   directory uws.ts installed it in).
 *
 * Prints `{ "type": "ready", "port", "pid" }` on stdout; ends when stdin closes.
 */
import { createRequire } from 'node:module'
import type { AddressInfo, Socket } from 'node:net'
import { join } from 'node:path'
import { type WebSocket, WebSocketServer } from 'ws'

/** `ws` exports its frame builder (`WebSocket.Sender`); @types/ws does not declare it. */
const { Sender } = createRequire(import.meta.url)('ws') as {
  Sender: {
    frame(
      data: Buffer,
      o: { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean },
    ): Buffer[]
  }
}

type Kind = 'ws-loop' | 'ws-frame-cork' | 'uws'
const cfg = JSON.parse(process.argv[2] ?? '{}') as { kind: Kind; uwsDir?: string }
const MAX_PAYLOAD = 1024 * 1024

const ready = (port: number): void => {
  process.stdout.write(`${JSON.stringify({ type: 'ready', port, pid: process.pid })}\n`)
}

function startWs(frameOnce: boolean): void {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    maxPayload: MAX_PAYLOAD,
    perMessageDeflate: false,
    clientTracking: false,
  })
  const subs = new Set<WebSocket>()
  // ws writes to the very socket of the upgrade request.
  const sockets = new Map<WebSocket, Socket>()
  const corked = new Set<Socket>()
  const uncorkAll = (): void => {
    for (const s of corked) s.uncork()
    corked.clear()
  }
  wss.on('connection', (ws, req) => {
    sockets.set(ws, req.socket as Socket)
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary && data.length === 3 && data.toString('latin1') === 'sub') {
        subs.add(ws)
        ws.send('ok')
        return
      }
      if (!frameOnce) {
        for (const s of subs) s.send(data, { binary: isBinary })
        return
      }
      const frame = Buffer.concat(
        Sender.frame(data, {
          fin: true,
          rsv1: false,
          opcode: isBinary ? 2 : 1,
          mask: false,
          readOnly: false,
        }),
      )
      if (corked.size === 0) process.nextTick(uncorkAll)
      for (const s of subs) {
        if (s.readyState !== 1) continue
        const sock = sockets.get(s)!
        if (!corked.has(sock)) {
          corked.add(sock)
          sock.cork()
        }
        sock.write(frame)
      }
    })
    ws.on('close', () => {
      subs.delete(ws)
      sockets.delete(ws)
    })
    ws.on('error', () => {})
  })
  wss.on('listening', () => ready((wss.address() as AddressInfo).port))
}

interface UwsSocket {
  send(m: string | Uint8Array, isBinary?: boolean): number
  subscribe(topic: string): boolean
}
interface UwsApp {
  ws(pattern: string, behaviour: Record<string, unknown>): UwsApp
  listen(host: string, port: number, cb: (token: unknown) => void): UwsApp
  publish(topic: string, message: ArrayBuffer | Uint8Array, isBinary?: boolean): boolean
}
interface Uws {
  App(): UwsApp
  DISABLED: number
  us_socket_local_port(token: unknown): number
}

function startUws(dir: string): void {
  const uws = createRequire(join(dir, 'package.json'))('uwebsockets') as Uws
  const app: UwsApp = uws.App().ws('/*', {
    compression: uws.DISABLED,
    maxPayloadLength: MAX_PAYLOAD,
    // As much room as wirelog's default outbound cap per client (8 MiB).
    maxBackpressure: 8 * 1024 * 1024,
    idleTimeout: 0,
    sendPingsAutomatically: false,
    message: (ws: UwsSocket, message: ArrayBuffer, isBinary: boolean) => {
      if (!isBinary && message.byteLength === 3 && Buffer.from(message).toString() === 'sub') {
        ws.subscribe('bench')
        ws.send('ok')
        return
      }
      app.publish('bench', message, isBinary)
    },
  })
  app.listen('127.0.0.1', 0, (token) => {
    if (!token) throw new Error('uws: listen failed')
    ready(uws.us_socket_local_port(token))
  })
}

if (cfg.kind === 'uws') startUws(cfg.uwsDir!)
else startWs(cfg.kind === 'ws-frame-cork')
process.stdin.resume()
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
