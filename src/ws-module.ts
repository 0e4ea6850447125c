/**
 * `ws`, loaded with `require`. It is a CommonJS package: imported from an ES module, Node first
 * scans every one of its files for named exports (about 14 ms of start-up on a 2-core VM);
 * required, it is simply loaded. The API is the same.
 */
import { createRequire } from 'node:module'
import type * as WS from 'ws'

const ws = createRequire(import.meta.url)('ws') as typeof WS

export const WebSocketServer = ws.WebSocketServer
export type WebSocketServer = WS.WebSocketServer
export type WebSocket = WS.WebSocket
