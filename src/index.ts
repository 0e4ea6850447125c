/**
 * wirelog: a WebSocket server that logs every connection, message and disconnect and turns
 * each into an event you can hook.
 */
export { type Behaviour, echo, silent } from './behaviours/echo.js'
export {
  CloseCode,
  type CloseCodeInfo,
  type CloseCodeName,
  closeCodes,
  describeCloseCode,
} from './close-codes.js'
export { type Config, ConfigError, defaults, resolveConfig, type WirelogOptions } from './config.js'
export type { Client, ClientInfo, SendResult } from './connection.js'
export {
  type ClientDisconnected,
  EventBus,
  type EventMap,
  type Handler,
  type MessageReceived,
  type PayloadOf,
  type WsEvents,
} from './events.js'
export { ActivityLog } from './log/activity-log.js'
export { createServer, type ServerDeps, type ServerState, WirelogServer } from './server.js'
