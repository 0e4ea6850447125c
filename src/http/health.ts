/**
 * Liveness and readiness for orchestrators and load balancers:
 *
 * - `GET /healthz`: the process answers HTTP (liveness). 200 for as long as it does, also
 *   while draining: restarting a process that is shutting down cleanly only loses clients.
 * - `GET /readyz`: send new clients here? 200 only when every check passes, else 503:
 *   `listening` (the port is bound: no longer once a shutdown starts), `accepting` (not
 *   draining after `close()`), `log` (the activity log is writable; absent when logging is
 *   off) and `broker` (its backend is reachable; absent when the server has no broker).
 *
 * Both answer `{"status":"ok"|"unavailable","checks":{name:"ok"|"fail"}}`; an admin also
 * gets the lifecycle state and the number of connected clients (as `/health` does, counts are
 * not shown to anyone else on a non-loopback bind). HEAD gets the same status and headers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Broker } from '../broker/types.js'
import type { ActivityLogStats } from '../log/activity-log.js'
import { type RouteAccess, type RouteHandler, type RouteOptions, send } from './router.js'

/** What the probes read from the server (its public surface: `WirelogServer` fits). */
export interface HealthSource {
  readonly state: 'NEW' | 'RUNNING' | 'CLOSING' | 'CLOSED'
  readonly clients: { readonly size: number }
  readonly activityLog?: { readonly stats: ActivityLogStats } | undefined
  readonly broker?: Pick<Broker, 'connected'> | undefined
  address(): AddressInfo | null
}

export type CheckResult = 'ok' | 'fail'

export interface Readiness {
  readonly ready: boolean
  readonly checks: Readonly<Record<string, CheckResult>>
}

const result = (ok: boolean): CheckResult => (ok ? 'ok' : 'fail')

/** The readiness checks, evaluated now (also the `wirelog_ready` gauge). */
export function readiness(src: HealthSource): Readiness {
  const checks: Record<string, CheckResult> = {
    listening: result(src.address() !== null && src.state !== 'NEW' && src.state !== 'CLOSED'),
    accepting: result(src.state === 'RUNNING'),
  }
  const log = src.activityLog
  if (log !== undefined) checks.log = result(log.stats.writable)
  const broker = src.broker
  if (broker !== undefined) checks.broker = result(broker.connected)
  return { ready: Object.values(checks).every((c) => c === 'ok'), checks }
}

function answer(
  res: ServerResponse,
  src: HealthSource,
  admin: boolean,
  ok: boolean,
  checks: Readonly<Record<string, CheckResult>>,
): void {
  send(res, ok ? 200 : 503, {
    status: ok ? 'ok' : 'unavailable',
    checks,
    ...(admin ? { state: src.state, clients: src.clients.size } : {}),
  })
}

/** `/healthz`: 200 while the process serves HTTP at all. */
export function livenessHandler(src: HealthSource): RouteHandler {
  return (_req: IncomingMessage, res: ServerResponse, ctx) =>
    answer(res, src, ctx.admin, true, { process: 'ok' })
}

/** `/readyz`: 200 when every readiness check passes, else 503. */
export function readinessHandler(src: HealthSource): RouteHandler {
  return (_req: IncomingMessage, res: ServerResponse, ctx) => {
    const r = readiness(src)
    answer(res, src, ctx.admin, r.ready, r.checks)
  }
}

/**
 * Route `/healthz` and `/readyz` (GET and HEAD) on `add` (the server's router), public or
 * admin-only as the `health` option says; nothing when it is `off`.
 */
export function addHealthRoutes(
  add: (path: string, handler: RouteHandler, options: RouteOptions) => unknown,
  src: HealthSource,
  health: 'public' | 'admin' | 'off',
): void {
  if (health === 'off') return
  const access: RouteAccess = health === 'admin' ? 'admin' : 'public'
  add('/healthz', livenessHandler(src), { access })
  add('/readyz', readinessHandler(src), { access })
}
