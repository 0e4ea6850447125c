/**
 * Test helpers for `wirelog.v1`: a raw protocol client that collects parsed frames.
 */
import { once } from 'node:events'
import { WebSocket } from 'ws'
import { waitFor } from './helpers.js'

export type Frame = Record<string, unknown> & { op: string }

export interface V1 {
  ws: WebSocket
  frames: Frame[]
  welcome: Frame
  send(frame: Record<string, unknown>): void
  /** Wait for a frame matching `pred` that arrived after `from` (an index into frames). */
  next(
    pred: (f: Frame) => boolean,
    what?: string,
    from?: number,
    timeoutMs?: number,
  ): Promise<Frame>
  /** Send and wait for the answer carrying the same id. */
  call(frame: Record<string, unknown>, timeoutMs?: number): Promise<Frame>
  messages(topic?: string): Frame[]
  close(): Promise<void>
}

let ids = 0

export async function v1(
  url: string,
  o: { token?: string; headers?: Record<string, string>; protocols?: string[] } = {},
): Promise<V1> {
  const protocols = o.protocols ?? ['wirelog.v1', ...(o.token ? [`bearer.${o.token}`] : [])]
  const ws = new WebSocket(url, protocols, { headers: o.headers ?? {} })
  const frames: Frame[] = []
  ws.on('message', (d: Buffer) => frames.push(JSON.parse(d.toString()) as Frame))
  ws.on('error', () => {})
  await once(ws, 'open')
  const next: V1['next'] = (pred, what = 'frame', from = 0, timeoutMs = 5000) =>
    waitFor(() => frames.slice(from).find(pred), what, timeoutMs)
  const welcome = await next((f) => f.op === 'welcome', 'welcome')
  return {
    ws,
    frames,
    welcome,
    send: (f) => ws.send(JSON.stringify(f)),
    next,
    call: (f, timeoutMs) => {
      const id = `t${++ids}`
      const from = frames.length
      ws.send(JSON.stringify({ ...f, id }))
      return next(
        (x) => x.id === id && x.op !== 'message',
        `answer to ${String(f.op)} ${id}`,
        from,
        timeoutMs,
      )
    },
    messages: (topic) =>
      frames.filter((f) => f.op === 'message' && (topic === undefined || f.topic === topic)),
    close: async () => {
      if (ws.readyState === WebSocket.CLOSED) return
      ws.close()
      await once(ws, 'close')
    },
  }
}
