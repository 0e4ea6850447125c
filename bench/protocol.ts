/**
 * What the orchestrator and its child processes (server under test, load generators) say to
 * each other: one JSON object per line, commands on the child's stdin, reports on its
 * stdout. Every report carries a `type`; a child that fails says `{ type: 'error' }`.
 */
import type { Percentiles } from './stats.js'

/** Prefix every server under test puts in front of a text echo (wirelog's default). */
export const ECHO_PREFIX = 'Echo: '

export type LogFormat = 'text' | 'json' | 'plain'

export type ServerKind = 'raw-ws' | 'raw-ws-cork' | 'uws' | 'wirelog'

export interface ServerConfig {
  kind: ServerKind
  /** wirelog only: write the activity log at all. */
  logging: boolean
  format: LogFormat
  sync: boolean
  /** wirelog only: `--timeout` (heartbeat interval, s); undefined = wirelog's default. */
  heartbeat: number | undefined
  /** wirelog only: more CLI flags (e.g. a raised --max-connections for --scale). */
  extraFlags?: string[] | undefined
  /** uws only: the directory to load the uwebsockets package from (see uws.ts). */
  uwsDir?: string | undefined
  /** The process ends itself after this long, whatever happens. */
  maxLifetimeMs: number
}

export type ServerCommand =
  /** Force a full GC (the server runs with --expose-gc), then report memory. */
  | { cmd: 'gc' }
  /** Report once the server counts exactly `n` open connections (or after `timeoutMs`). */
  | { cmd: 'waitClients'; n: number; timeoutMs: number }
  /** Close every connection and exit. */
  | { cmd: 'close' }

/** How a wirelog process (the real CLI) ended, and what its activity log holds. */
export interface LogReport {
  /** Exit code after SIGTERM (0: a clean shutdown, the log flushed). */
  exitCode: number | string
  /** Newlines found in the log file(s) after exit (rotated files included). */
  fileLines: number
  fileBytes: number
  /** What it said on stderr besides its listening banner (warnings, write errors). */
  stderr: string[]
}

export type ServerReport =
  | { type: 'ready'; port: number; pid: number }
  | { type: 'gc'; rss: number; heapUsed: number }
  | { type: 'clients'; n: number; ok: boolean }
  | { type: 'closed' }
  | { type: 'error'; message: string }

export type LoadMode = 'closed' | 'open' | 'idle'

/** A generator process: it runs one phase after another until its stdin closes. */
export interface LoadgenConfig {
  /** Index of this generator among several (varies the payload pattern). */
  index: number
  /** The process ends itself (with an error) after this long. */
  hardLimitMs: number
}

/**
 * Which client: `ws` (the `ws` package's WebSocket, as an application would use it) or
 * `frames` (raw sockets, a hand-made handshake, pre-masked frames written in batches: cheap
 * enough that one generator core can saturate the server).
 */
export type ClientKind = 'ws' | 'frames'

/** One phase of load: connect, (send,) stop. */
export interface PhaseConfig {
  mode: LoadMode
  client: ClientKind
  url: string
  connections: number
  /** Closed loop: messages in flight per connection. */
  pipeline: number
  /** Payload bytes per message (before the server's prefix). */
  size: number
  /** Open loop: messages per second over all of this generator's connections. */
  rate: number
  /** Source addresses to spread connections over (127.x.y.z), round-robin; [] = the kernel's choice. */
  localAddresses: string[]
  /** Handshakes in progress at once while connecting. */
  concurrency: number
  /** Open loop: most latency samples kept. */
  maxSamples: number
  /** Most messages sent in the phase: a bound should a 'stop' never come. */
  maxMessages: number
}

export type LoadgenCommand =
  /** Open the phase's connections (a separate step so several generators can start together). */
  | { cmd: 'connect'; phase: PhaseConfig }
  /** Start sending. */
  | { cmd: 'start' }
  /** Report counters now; the first mark starts latency recording, the second stops it. */
  | { cmd: 'mark' }
  /** Stop sending, wait for every echo still in flight, close all connections, report. */
  | { cmd: 'stop' }

export interface ConnectReport {
  type: 'ready'
  connected: number
  failed: number
  /** Wall time from the first connect attempt to the last open (ms). */
  ms: number
  firstError: string | undefined
}

export interface MarkReport {
  type: 'mark'
  /** performance.now() of the generator. */
  t: number
  sent: number
  echoed: number
}

export interface LoadgenResult {
  sent: number
  echoed: number
  /** Echoes whose length, prefix, sequence or content differed from what was sent. */
  mismatches: number
  firstMismatch: string | undefined
  /** Connections that closed or failed while the load was running. */
  unexpectedCloses: number
  /** Echoes still missing when the drain timed out. */
  missing: number
  /**
   * Round-trip times (ms) recorded between the two marks: open loop, from each message's
   * scheduled send time (so a stalled generator or server cannot hide its delay); closed loop
   * (frames client), from the write of its batch.
   */
  latency: Percentiles | undefined
  /** Open loop: how late (ms) the generator sent behind its schedule, at worst. */
  maxScheduleLagMs: number
  errors: string[]
}

export type LoadgenReport =
  | { type: 'hello'; pid: number }
  | ConnectReport
  | MarkReport
  | { type: 'done'; result: LoadgenResult }
  | { type: 'error'; message: string }
