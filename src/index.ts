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
export type { AuthorizeHook, Op, TopicOp } from './auth/permissions.js'
export type { Behaviour } from './behaviour.js'
export { echo, silent } from './behaviours/echo.js'
export { MemoryBroker, type MemoryBrokerOptions, MemoryHub } from './broker/memory.js'
export { BrokerUnavailableError, RedisBroker, type RedisBrokerOptions } from './broker/redis.js'
export type {
  Broker,
  BrokerHandler,
  BrokerLimits,
  BrokerStats,
  HistoryResult,
  NodeIdentity,
  PresenceEntry,
  Publisher,
  RegistryEntry,
  SessionRecord,
  Signal,
  SignalTarget,
  TopicMessage,
} from './broker/types.js'
export {
  CloseCode,
  type CloseCodeInfo,
  type CloseCodeName,
  closeCodes,
  describeCloseCode,
} from './close-codes.js'
export { type Config, ConfigError, defaults, resolveConfig, type WirelogOptions } from './config.js'
export type { Client, ClientInfo, ClientUser, Permissions, SendResult } from './connection.js'
export {
  type AccessDenied,
  type AuthExpired,
  type AuthRefreshed,
  type BrokerDown,
  type BrokerUp,
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
  type MessageDirect,
  type MessageDropped,
  type MessageReceived,
  type MessageSent,
  type PayloadOf,
  type PubsubError,
  type ServerClosed,
  type ServerClosing,
  type ServerListening,
  type SessionExpired,
  type SessionResumed,
  type TopicPublished,
  type TopicSubscribed,
  type TopicUnsubscribed,
  type UserNamespace,
  type WebhookDropped,
  type WebhookFailed,
  type WorkerExited,
  type WorkerStarted,
  type WsEventName,
  type WsEvents,
} from './events.js'
export type { ForwardStats } from './forward.js'
export { type HandlerCleanup, HandlerError, type HandlerSetup } from './handlers/index.js'
export type { CheckResult, Readiness } from './http/health.js'
export type { PromClient, ServerMetrics } from './http/metrics.js'
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
export { ErrorCode, type ErrorCodeName, PROTOCOL } from './pubsub/protocol.js'
export type { Gap } from './pubsub/router.js'
export { checkTopic, covers, matches } from './pubsub/topics.js'
export {
  createServer,
  type SendTarget,
  type ServerDeps,
  type ServerState,
  WirelogServer,
} from './server.js'
export type { WebhookStats } from './webhooks/delivery.js'
