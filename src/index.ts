/**
 * wirelog: a WebSocket server that logs every connection, message and disconnect and turns
 * each into an event you can hook.
 */
export {
  type Accept,
  type AdmissionDecision,
  type AdmissionHook,
  type AdmissionRequest,
  accept,
  type Reject,
  reject,
} from './admission.js'
export type { Behaviour } from './behaviour.js'
export { echo, silent } from './behaviours/echo.js'
export {
  CloseCode,
  type CloseCodeInfo,
  type CloseCodeName,
  closeCodes,
  describeCloseCode,
} from './close-codes.js'
export { type Config, ConfigError, defaults, resolveConfig, type WirelogOptions } from './config.js'
export type { Client, ClientInfo, ClientUser, SendResult } from './connection.js'
export {
  type ClientConnected,
  type ClientDisconnected,
  type ClientError,
  type ClientRejected,
  EventBus,
  type EventMap,
  type EventNameFor,
  type Handler,
  type HandlerFailed,
  type LogDropped,
  type LogError,
  type LogRotated,
  type MessageDropped,
  type MessageReceived,
  type MessageSent,
  type PayloadOf,
  type ServerClosed,
  type ServerClosing,
  type ServerListening,
  type UserNamespace,
  type WsEventName,
  type WsEvents,
} from './events.js'
export type {
  RouteAccess,
  RouteContext,
  RouteHandler,
  RouteOptions,
  UpgradeHandler,
} from './http/router.js'
export {
  ActivityLog,
  type ActivityLogStats,
  type LogFields,
  type Logger,
} from './log/activity-log.js'
export type { TrustProxy } from './proxy.js'
export { createServer, type ServerDeps, type ServerState, WirelogServer } from './server.js'
