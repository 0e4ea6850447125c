/**
 * The options schema: defaults, validation, environment and file loading.
 *
 * One zod schema gives the library its `WirelogOptions` (input) and `Config` (output) types
 * and the CLI its validation; the `OPTIONS` table maps every setting to its flag and
 * environment variable so `--help`, env loading and error messages never drift apart.
 *
 * The schemas use zod's `zod/v3` API (a stable subpath of the zod 4 package). Its code is a
 * fifth the size of the v4 API's, which loads all of its locales: on a 2-core VM, importing
 * it, building these schemas and parsing a config take ~20 ms against ~65 ms, a third of the
 * server's whole start-up. (The wirelog.v1 frame schema, validated per message, stays on the
 * v4 API, which validates twice as fast, and loads apart: see pubsub/schema.ts.)
 */
import { readFileSync } from 'node:fs'
import { z } from 'zod/v3'
import type { AdmissionHook } from './admission.js'
import type { AuthorizeHook } from './auth/permissions.js'
import { type Behaviour, isBehaviour } from './behaviour.js'
import { editDistance } from './events.js'
import { compileTrust } from './proxy.js'
import { isEventPattern, isWebhookUrl, parseWebhookFlag } from './webhooks/spec.js'

const KiB = 1024
const MiB = 1024 * KiB

const port = z.number().int().min(0).max(65535)
const nonNegInt = z.number().int().min(0)
const posInt = z.number().int().min(1)

const rotateSchema = z
  .object({
    /** Rotate when the file reaches this many bytes; 0 = never by size. */
    size: nonNegInt.default(0),
    /** Rotate every this many seconds; 0 = never by time. */
    interval: nonNegInt.default(0),
    /** How many rotated files to keep (`file.1` … `file.N`). */
    keep: posInt.max(1000).default(5),
  })
  .strict()

/** Seals of the chain head (`log.seal` lines); a key implies `chain`. */
const signSchema = z
  .object({
    /** Key file: an HMAC secret (≥ 16 bytes) or an Ed25519 PEM private key. */
    key: z.string().min(1).optional(),
    /** Lines between two seals; 0 = by time (and at rotation and close) only. */
    every: nonNegInt.default(1000),
    /** Seconds between two seals while lines arrive; 0 = by count only. */
    interval: z.number().min(0).max(86_400).default(10),
  })
  .strict()

const logSchema = z
  .object({
    /** Write the activity log at all. */
    enabled: z.boolean().default(true),
    /** Directory of the activity log (created if missing). */
    dir: z.string().min(1).default('.'),
    /** File name of the activity log inside `dir`. */
    file: z.string().min(1).default('websocket_activity.log'),
    /** `text` (timestamp, level, sentence, key=value), `json` (NDJSON) or `plain` (sentences only). */
    format: z.enum(['text', 'json', 'plain']).default('text'),
    /** Also (or, with `file: false` semantics via `enabled`) write lines to stdout. */
    stdout: z.boolean().default(false),
    /** Write every line synchronously: slower, but nothing is lost on `kill -9`. */
    sync: z.boolean().default(false),
    /** Lowest level written: `debug` adds `message.sent` lines. */
    level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    /** Bytes of each message payload shown in the log; the full byte count is always shown. */
    preview: nonNegInt.max(64 * KiB).default(256),
    /**
     * `preview` (the first `preview` bytes of each message) or `full`: every message's whole
     * content (received, and sent at level `debug`) in the json line's `data` field, up to
     * `payloadMax` bytes, so the log can be replayed (`wirelog replay`). Needs `format: json`.
     */
    payloads: z.enum(['preview', 'full']).default('preview'),
    /** With `payloads: full`: most bytes of one message recorded; longer ones are cut and marked `truncated`. */
    payloadMax: posInt.max(64 * MiB).default(1 * MiB),
    /** Longest time (ms) an asynchronously written line may wait in memory before a write. */
    flushInterval: posInt.max(10_000).default(50),
    /** Bytes of pending log lines held in memory while the file is unwritable; beyond, lines are dropped and counted. */
    maxBuffer: posInt.default(16 * MiB),
    rotate: rotateSchema.default({}),
    /**
     * Query parameters (and header names) whose values are replaced with `[redacted]`
     * wherever the log shows them, in addition to the built-in list (`token`,
     * `access_token`, `auth`, `key`, `password`, `secret`, …). Case-insensitive.
     */
    redact: z.array(z.string().min(1)).default([]),
    /** End every line with a SHA-256 hash chaining it to the one before (json only; docs/audit.md). */
    chain: z.boolean().default(false),
    sign: signSchema.default({}),
  })
  .strict()

const limitsSchema = z
  .object({
    /** Largest accepted message, in bytes (after decompression). Bigger → close 1009. */
    maxPayload: posInt.default(1 * MiB),
    /** Most fragments one message may arrive in; 0 = maxPayload / 64 (64-byte fragments are fine). */
    maxFragments: nonNegInt.default(0),
    /** Most simultaneous connections; 0 = unlimited. Over → 503 at upgrade. */
    maxConnections: nonNegInt.default(50_000),
    /** Most simultaneous connections from one IP; 0 = unlimited. Over → 503 at upgrade. */
    maxConnectionsPerIp: nonNegInt.default(1_000),
    /** Outbound bytes queued for one client before it is closed as a slow consumer (4000). */
    maxBufferedBytes: posInt.default(8 * MiB),
    /** Messages a client may send per second (token bucket, burst = 2×); 0 = unlimited. */
    rateLimit: nonNegInt.default(0),
    /** What to do with messages over the rate limit: drop them, or close with 1008. */
    rateLimitAction: z.enum(['drop', 'close']).default('close'),
    /** Milliseconds a client has to send the complete upgrade request headers. */
    headersTimeout: posInt.default(5_000),
  })
  .strict()

const deflateSchema = z
  .object({
    /** Only compress outgoing messages at least this big (bytes). */
    threshold: nonNegInt.default(1024),
    /** zlib level for outgoing messages (0–9). */
    level: z.number().int().min(0).max(9).default(1),
  })
  .strict()

const pubsubSchema = z
  .object({
    /** Subscriptions (topics and patterns) one client may hold. */
    maxSubscriptions: posInt.max(100_000).default(100),
    /** Largest `data` of one publish or direct message, in bytes of JSON. */
    maxDataBytes: posInt.max(64 * MiB).default(64 * KiB),
    /** Messages of history kept per topic (0 = none: no replay on resume). */
    historySize: nonNegInt.max(1_000_000).default(100),
    /** Seconds a message stays in history. */
    historyTtl: posInt.max(30 * 86_400).default(300),
    /** Topics whose history is kept (the least recently published are forgotten first). */
    historyTopics: posInt.max(10_000_000).default(10_000),
    /** Seconds a disconnected client's session can be resumed. */
    sessionTtl: posInt.max(7 * 86_400).default(120),
    /** Seconds a publish `id` is remembered, so a retry is not published twice. */
    dedupeTtl: posInt.max(86_400).default(120),
    /** Authorization rules file (JSON: `{ "rules": [{ "users": […], "subscribe": […], … }] }`). */
    rules: z.string().min(1).optional(),
    /** Authorization hook (library only): `(client, op, topic) => boolean | undefined`. */
    authorize: z.custom<AuthorizeHook>((v) => typeof v === 'function').optional(),
  })
  .strict()

const JWT_ALGORITHMS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const

const jwtSchema = z
  .object({
    /** Key file: a PEM public key or certificate, a JWK, or an HMAC secret (≥ 32 characters). */
    key: z.string().min(1).optional(),
    /** JWKS file (`{ "keys": […] }`), re-read when a token names an unknown key id. */
    jwksFile: z.string().min(1).optional(),
    /** JWKS URL, fetched and cached; refetched on an unknown key id (rotation). */
    jwksUrl: z.string().url().optional(),
    /** Required `iss`. */
    issuer: z.string().min(1).optional(),
    /** Required `aud`. */
    audience: z.string().min(1).optional(),
    /** Accepted `alg` values. */
    algorithms: z
      .array(z.enum(JWT_ALGORITHMS))
      .min(1)
      .default(['HS256', 'RS256', 'ES256', 'EdDSA']),
    /** Seconds of clock skew tolerated on `exp` / `nbf`. */
    clockSkew: nonNegInt.max(3600).default(30),
    /** Claim holding the user id. */
    userClaim: z.string().min(1).default('sub'),
    /** Claim holding topic permissions (`{ "subscribe": […], "publish": […], … }`). */
    permissionsClaim: z.string().min(1).default('wirelog'),
    /** Seconds a fetched JWKS is trusted. */
    jwksCacheMaxAge: posInt.default(600),
    /** Fewest seconds between two JWKS fetches. */
    jwksCooldown: nonNegInt.default(30),
  })
  .strict()

const authSchema = z
  .object({
    /** `none`, `tokens` (a static tokens file) or `jwt`. */
    mode: z.enum(['none', 'tokens', 'jwt']).default('none'),
    /** Static tokens file: `{ "tokens": [{ "token" | "sha256": …, "user": …, "permissions": … }] }`. */
    tokensFile: z.string().min(1).optional(),
    jwt: jwtSchema.default({}),
  })
  .strict()

// —— scale-out: broker, workers, forwarding ——

const redisSchema = z
  .object({
    /** `redis://[user:pass@]host[:port][/db]`; `rediss://` for TLS. */
    url: z
      .string()
      .regex(/^rediss?:\/\/[^\s]+$/, 'a redis:// or rediss:// URL')
      .default('redis://127.0.0.1:6379'),
    /** Prefix of every key and channel: deployments sharing one Redis use different ones. */
    prefix: z.string().min(1).max(64).default('wirelog:'),
    /** Milliseconds to connect (start-up fails beyond it). */
    connectTimeout: posInt.max(600_000).default(5_000),
    /** Milliseconds a command may wait to be sent while Redis is unreachable, then fails (never executed). */
    commandTimeout: posInt.max(600_000).default(2_000),
    /** Milliseconds to wait for the reply of a sent command. */
    replyTimeout: posInt.max(600_000).default(10_000),
    /** Commands in flight toward Redis before new ones are refused (and counted). */
    maxQueue: posInt.max(10_000_000).default(10_000),
    /** Milliseconds a node's liveness key lives (refreshed every third): a dead node's presence goes after it. */
    nodeTtl: posInt.min(300).max(3_600_000).default(15_000),
  })
  .strict()

const brokerSchema = z
  .object({
    /** `memory`: one process (or the workers of one host); `redis`: many nodes behind one Redis. */
    type: z.enum(['memory', 'redis']).default('memory'),
    redis: redisSchema.default({}),
  })
  .strict()

const forwardSchema = z
  .object({
    /** Events forwarded, as patterns of the json line's `event` (`*` any characters): `client.*`, `topic.published`, `app:*`. */
    events: z.array(z.string().min(1)).default(['*']),
    /** Lines held while a destination is slow or down; beyond, lines are dropped and counted. */
    backlog: posInt.max(10_000_000).default(10_000),
    redis: z
      .object({
        /** Stream key to XADD every forwarded line to (off when unset). */
        stream: z.string().min(1).optional(),
        /** Redis for the stream (default: the broker's URL). */
        url: z
          .string()
          .regex(/^rediss?:\/\/[^\s]+$/, 'a redis:// or rediss:// URL')
          .optional(),
        /** Approximate length the stream is trimmed to (`MAXLEN ~`). */
        maxLen: posInt.default(100_000),
      })
      .strict()
      .default({}),
    nats: z
      .object({
        /** NATS subject to publish every forwarded line on (off when unset). */
        subject: z.string().min(1).optional(),
        /** NATS server(s), comma-separated. */
        url: z.string().min(1).default('nats://127.0.0.1:4222'),
      })
      .strict()
      .default({}),
  })
  .strict()

/** One webhook endpoint (see docs/webhooks.md). */
const webhookSchema = z
  .object({
    /** Events POSTed to it, as patterns of the event name (`*` any characters): `client.*`, `app:order.*`. */
    events: z.array(z.string().refine(isEventPattern, 'an event name or pattern')).min(1),
    /** Where deliveries are POSTed (`http://` or `https://`). */
    url: z.string().refine(isWebhookUrl, 'an http:// or https:// URL'),
    /** HMAC-SHA256 key of `Wirelog-Signature` (default: `webhookSecret`; none = unsigned). */
    secret: z.string().min(1).optional(),
    /** Milliseconds one attempt may take, response headers included. */
    timeout: posInt.max(600_000).default(10_000),
    /** Attempts after the first, on network errors, timeouts, 5xx, 408 and 429. */
    retries: nonNegInt.max(100).default(5),
    /** Milliseconds before the first retry; doubled for each next one (with jitter). */
    retryDelay: posInt.max(3_600_000).default(1_000),
    /** Longest wait between two attempts, milliseconds. */
    maxRetryDelay: posInt.max(3_600_000).default(60_000),
    /** Deliveries in flight at once (a waiting retry holds its slot). */
    concurrency: posInt.max(256).default(4),
    /** Deliveries waiting; beyond, one is dropped and counted (see `overflow`). */
    queue: posInt.max(1_000_000).default(1_000),
    /** Bytes of request bodies waiting; beyond, as for `queue`. */
    queueBytes: posInt.default(8 * MiB),
    /** When the queue is full: drop the new delivery, or the oldest waiting one. */
    overflow: z.enum(['drop-new', 'drop-oldest']).default('drop-new'),
  })
  .strict()

const tlsSchema = z
  .object({
    /** PEM certificate file (chain after the leaf): serve `wss://` / `https://`. With `key`, or neither. */
    cert: z.string().min(1).optional(),
    /** PEM private key file of `cert`. */
    key: z.string().min(1).optional(),
    /** PEM file of the CAs client certificates must be signed by. */
    ca: z.string().min(1).optional(),
    /**
     * Client certificates: `none` (not asked for), `request` (asked for; a client without
     * one, or with one not signed by `ca`, still connects; admission hooks see
     * `request.socket.authorized`), `require` (a client without a certificate signed by `ca`
     * is refused during the handshake).
     */
    clientCert: z.enum(['none', 'request', 'require']).default('none'),
  })
  .strict()

export const configSchema = z
  .object({
    /** Interface to bind. */
    host: z.string().min(1).default('0.0.0.0'),
    /** TCP port; 0 picks a free one. */
    port: port.default(8080),
    /**
     * What the server does with messages of clients that did not negotiate a subprotocol:
     * `echo` replies to every message, `silent` receives and logs only, `pubsub` speaks
     * `wirelog.v1` to everyone; the library also takes a `Behaviour` object (`echo('> ')`, your
     * own). Clients that ask for `wirelog.v1` always get the pubsub router.
     */
    behaviour: z
      .union([
        z.enum(['echo', 'silent', 'pubsub']),
        z.custom<Behaviour>(isBehaviour, 'a Behaviour object'),
      ])
      .default('echo'),
    /** Prefix of text echoes; empty makes a pure echo server. Binary is always echoed unchanged. */
    echoPrefix: z.string().default('Echo: '),
    /**
     * Handler modules (`.js`, `.mjs`, `.cjs`, `.ts`, `.mts`; relative to the working
     * directory) whose setup function gets the server before it binds, in this order.
     */
    handlers: z
      .array(
        z
          .string()
          .min(1)
          .regex(/\.(c|m)?js$|\.m?ts$/i, 'expected a .js, .mjs, .cjs, .ts or .mts file'),
      )
      .default([]),
    /**
     * Heartbeat interval in seconds (the case study's `timeout: 30`): the server pings every
     * client this often and terminates one that misses `heartbeatMissed` pings in a row.
     * 0 turns heartbeats off. It never stops the server.
     */
    timeout: z.number().min(0).max(86_400).default(30),
    /** Consecutive unanswered pings before a client is terminated (close 4002 in the log). */
    heartbeatMissed: posInt.max(100).default(2),
    /** Seconds a client may send nothing before it is closed with 4001; 0 = never. */
    idleTimeout: z.number().min(0).max(86_400).default(0),
    /** Milliseconds `close()` waits for clients to finish the closing handshake before terminating them. */
    shutdownTimeout: nonNegInt.max(600_000).default(5_000),
    /** Exact origins allowed to connect (`*` = any; `https://*.example.com` = any subdomain). Empty = any. */
    allowedOrigins: z.array(z.string().min(1)).default([]),
    /**
     * Reverse proxies whose `X-Forwarded-For` is believed: `false` (none; the TCP peer is the
     * client), `true` or N (the nearest 1 or N hops), or a list of proxy addresses, CIDR
     * ranges and the names `loopback`, `linklocal`, `uniquelocal`. The client is the
     * right-most address not trusted.
     */
    trustProxy: z
      .union([z.boolean(), z.number().int().min(0).max(100), z.array(z.string().min(1))])
      .default(false)
      .superRefine((v, ctx) => {
        try {
          compileTrust(v)
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message })
        }
      }),
    /** Pending-connection queue length passed to `listen()` (the kernel caps it at `net.core.somaxconn`). */
    backlog: posInt.max(65535).default(511),
    /**
     * `GET /health`: `public` (status for anyone; counts only for admins), `admin` (admins
     * only) or `off`.
     */
    health: z.enum(['public', 'admin', 'off']).default('public'),
    /**
     * Token that opens the admin endpoints on a non-loopback bind (`Authorization: Bearer`).
     * Without it they are open only when the server is bound to loopback.
     */
    adminToken: z.string().min(16).optional(),
    /** The live dashboard at `GET /dashboard` and its feed (admin access, like every admin endpoint). */
    dashboard: z.boolean().default(true),
    /**
     * Prometheus metrics at `GET /metrics` (admin access; see docs/observability.md). Default
     * on; prom-client is loaded only when it is on.
     */
    metrics: z.boolean().default(true),
    /**
     * Behaviours per subprotocol (library only): a client that offers one of these names in
     * `Sec-WebSocket-Protocol` gets that behaviour; others get `behaviour`.
     */
    protocols: z
      .record(z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/), z.custom<Behaviour>(isBehaviour))
      .default({}),
    /** Admission hooks run before the 101 (library only); see `AdmissionHook`. */
    admit: z
      .union([
        z.custom<AdmissionHook>((v) => typeof v === 'function'),
        z.array(z.custom<AdmissionHook>((v) => typeof v === 'function')),
      ])
      .optional(),
    /** permessage-deflate: `false` (default) or its limits. */
    perMessageDeflate: z.union([z.literal(false), deflateSchema]).default(false),
    log: logSchema.default({}),
    limits: limitsSchema.default({}),
    pubsub: pubsubSchema.default({}),
    auth: authSchema.default({}),
    broker: brokerSchema.default({}),
    /** Processes sharing the port (node:cluster), or `auto` (one per CPU). */
    workers: z.union([posInt.max(256), z.literal('auto')]).default(1),
    /** Copies of the activity events for other services (Redis Stream, NATS subject). */
    forward: forwardSchema.default({}),
    /** HTTP endpoints that get matching events as signed POSTs (see docs/webhooks.md). */
    webhooks: z.array(webhookSchema).default([]),
    /** Default signing secret of the webhooks (`Wirelog-Signature`). */
    webhookSecret: z.string().min(1).optional(),
    tls: tlsSchema.default({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    // Messages that stand alone after the option's name (`params.alone`).
    const tls = (key: string, message: string): void =>
      ctx.addIssue({ code: 'custom', path: ['tls', key], message, params: { alone: true } })
    if (c.tls.cert !== undefined && c.tls.key === undefined)
      tls('cert', 'needs its key too (--tls-key, tls.key): TLS takes both, or neither')
    else if (c.tls.key !== undefined && c.tls.cert === undefined)
      tls('key', 'needs its certificate too (--tls-cert, tls.cert): TLS takes both, or neither')
    else if (c.tls.cert === undefined && c.tls.clientCert !== 'none')
      tls('clientCert', 'needs TLS: add --tls-cert and --tls-key')
    else if (c.tls.cert === undefined && c.tls.ca !== undefined)
      tls('ca', 'needs TLS: add --tls-cert and --tls-key')
    else if (c.tls.clientCert !== 'none' && c.tls.ca === undefined)
      tls('clientCert', 'needs --tls-ca (tls.ca), the CAs client certificates must be signed by')
    if ((c.log.chain || c.log.sign.key !== undefined) && c.log.format !== 'json')
      ctx.addIssue({
        code: 'custom',
        path: ['log', 'format'],
        message: 'a chained log (--log-chain, --log-sign-key) needs json',
      })
    if (c.log.payloads === 'full' && c.log.format !== 'json')
      ctx.addIssue({
        code: 'custom',
        path: [],
        message:
          'log.payloads "full" needs log.format "json" (--log-payloads full needs --log-format json): only json lines have a data field',
      })
    if (c.auth.mode === 'tokens' && c.auth.tokensFile === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['auth', 'tokensFile'],
        message: 'auth mode "tokens" needs a tokens file',
      })
    if (c.auth.mode === 'jwt') {
      const n = [c.auth.jwt.key, c.auth.jwt.jwksFile, c.auth.jwt.jwksUrl].filter(
        (x) => x !== undefined,
      ).length
      if (n !== 1)
        ctx.addIssue({
          code: 'custom',
          path: ['auth', 'jwt'],
          message: 'auth mode "jwt" needs exactly one of key, jwksFile or jwksUrl',
        })
    }
  })

/** Options accepted by `createServer()`: every field optional, defaults filled in. */
export type WirelogOptions = z.input<typeof configSchema>
/** The validated, frozen configuration a server runs with. */
export type Config = Readonly<z.output<typeof configSchema>>

/**
 * A configuration error; `message` names the option (or flag, variable, file) and what it
 * accepts. When there is more than one mistake, `problems` holds them all, one per line of
 * `message`.
 */
export class ConfigError extends TypeError {
  readonly code = 'WIRELOG_ERR_CONFIG'
  readonly problems: readonly string[]
  constructor(problems: string | readonly string[]) {
    const list = typeof problems === 'string' ? [problems] : problems
    super(list.join('\n'))
    this.problems = list
  }
}

type Kind =
  | 'string'
  | 'int'
  | 'number'
  | 'bool'
  | 'enum'
  | 'list'
  | 'trust'
  | 'count'
  /** `EVENTS=URL`, repeatable: each occurrence adds an endpoint. */
  | 'webhook'

export interface OptionSpec {
  /** Dotted path in the config object. */
  readonly path: string
  readonly flag: string
  readonly env: string
  readonly kind: Kind
  readonly values?: readonly string[]
  readonly help: string
  /** What the option accepts, for error messages (numbers: the range comes from the schema). */
  readonly accepts: string
  /** The value placeholder `--help` shows (`<port>`, `<ms>`, …); empty for booleans. */
  readonly arg: string
  /** A list flag given more than once adds to the list (`--handler a.js --handler b.js`). */
  readonly repeatable?: true
}

/** Either the values of an enum, or the placeholder `--help` shows (and the values). */
type SpecExtra =
  | readonly string[]
  | { readonly arg?: string; readonly values?: readonly string[]; readonly repeatable?: true }

const INT = 'an integer'
const BYTES = 'a whole number of bytes'
const MS = 'a whole number of milliseconds'
const SECONDS = 'a number of seconds'
const WHOLE_SECONDS = 'a whole number of seconds'
const BOOL = 'true or false'

/** Placeholders for numbers, by what they count. */
const NUMBER_ARG = new Map([
  [BYTES, '<bytes>'],
  [MS, '<ms>'],
  [SECONDS, '<seconds>'],
  [WHOLE_SECONDS, '<seconds>'],
])

function spec(
  path: string,
  kind: Kind,
  help: string,
  accepts: string,
  extra?: SpecExtra,
): OptionSpec {
  const flag = `--${path.replace(/^(limits|log)\./, (_m, g) => (g === 'log' ? 'log-' : '')).replace(/[A-Z.]/g, (c) => (c === '.' ? '-' : `-${c.toLowerCase()}`))}`
  return named(flag, path, kind, help, accepts, extra)
}

/** An option whose flag is not derived from its path. */
function named(
  flag: string,
  path: string,
  kind: Kind,
  help: string,
  accepts: string,
  extra?: SpecExtra,
): OptionSpec {
  const env = `WIRELOG_${flag.slice(2).replace(/-/g, '_').toUpperCase()}`
  const values = Array.isArray(extra) ? extra : (extra as { values?: readonly string[] })?.values
  const given = Array.isArray(extra) ? undefined : (extra as { arg?: string } | undefined)?.arg
  const arg =
    given ??
    {
      bool: '',
      trust: '[<hops|list>]',
      enum: `<${values?.join('|')}>`,
      list: '<list>',
      string: '<text>',
      int: NUMBER_ARG.get(accepts) ?? '<n>',
      number: NUMBER_ARG.get(accepts) ?? '<n>',
      count: '<n|auto>',
      webhook: '<events=url>',
    }[kind]
  const repeatable = Array.isArray(extra) ? undefined : (extra as { repeatable?: true })?.repeatable
  return {
    path,
    flag,
    env,
    kind,
    help,
    accepts,
    arg,
    ...(values ? { values } : {}),
    ...(repeatable ? { repeatable } : {}),
  }
}

/** Every CLI flag / environment variable, in `--help` order. */
export const OPTIONS: readonly OptionSpec[] = [
  spec('host', 'string', 'interface to bind', 'a host name or IP address', { arg: '<host>' }),
  spec('port', 'int', 'TCP port (0 = any free port)', INT, { arg: '<port>' }),
  spec(
    'behaviour',
    'enum',
    'echo every message, only receive and log, or speak wirelog.v1 (topics) to every client',
    'one of: echo, silent, pubsub',
    ['echo', 'silent', 'pubsub'],
  ),
  spec('echoPrefix', 'string', 'prefix of text echoes; "" for a pure echo server', 'any text'),
  named(
    '--handler',
    'handlers',
    'list',
    'handler module (.js, .mjs, .cjs, .ts) whose setup(server) runs before the server listens; repeat the flag for more, set up in order',
    'a comma-separated list of .js, .mjs, .cjs, .ts or .mts files',
    { arg: '<path>', repeatable: true },
  ),
  spec(
    'timeout',
    'number',
    'heartbeat interval in seconds: a ping to every client this often (0 = off)',
    SECONDS,
  ),
  spec('heartbeatMissed', 'int', 'unanswered pings in a row before a client is terminated', INT),
  spec(
    'idleTimeout',
    'number',
    'seconds a client may send nothing before it is closed with 4001 (0 = never)',
    SECONDS,
  ),
  spec(
    'shutdownTimeout',
    'int',
    'milliseconds shutdown waits for clients to close before terminating them',
    MS,
  ),
  spec(
    'allowedOrigins',
    'list',
    'comma-separated origins allowed to connect (empty = any)',
    'a comma-separated list of origins',
  ),
  spec(
    'trustProxy',
    'trust',
    'trust X-Forwarded-For from proxies: a hop count, or addresses/CIDRs/loopback (bare flag = 1 hop)',
    'true, false, a hop count, or a comma-separated list of proxy addresses, CIDR ranges, loopback, linklocal, uniquelocal',
  ),
  spec(
    'backlog',
    'int',
    "pending-connection queue length passed to listen() (Node's default is 511; the kernel caps it at net.core.somaxconn)",
    INT,
  ),
  spec(
    'health',
    'enum',
    'GET /health: for anyone, admins only, or off',
    'one of: public, admin, off',
    ['public', 'admin', 'off'],
  ),
  spec(
    'adminToken',
    'string',
    'token that opens admin endpoints on a non-loopback bind',
    'a string of at least 16 characters',
    { arg: '<token>' },
  ),
  named(
    '--dashboard',
    'dashboard',
    'bool',
    'serve the live dashboard at /dashboard (admins only; --no-dashboard turns it off)',
    BOOL,
  ),
  named(
    '--metrics',
    'metrics',
    'bool',
    'Prometheus metrics at GET /metrics (admin access; --no-metrics turns them off)',
    BOOL,
  ),
  spec('perMessageDeflate', 'bool', 'enable permessage-deflate (with limits)', BOOL),
  spec('log.enabled', 'bool', 'write the activity log (--no-log turns it off)', BOOL),
  spec('log.dir', 'string', 'activity log directory (created if missing)', 'a directory path', {
    arg: '<path>',
  }),
  spec('log.file', 'string', 'activity log file name inside the directory', 'a file name', {
    arg: '<name>',
  }),
  spec('log.format', 'enum', 'activity log format', 'one of: text, json, plain', [
    'text',
    'json',
    'plain',
  ]),
  spec('log.stdout', 'bool', 'also write activity lines to stdout', BOOL),
  spec('log.sync', 'bool', 'write every line synchronously (no loss on kill -9)', BOOL),
  spec(
    'log.level',
    'enum',
    'lowest level logged (debug adds sent messages)',
    'one of: debug, info, warn, error',
    ['debug', 'info', 'warn', 'error'],
  ),
  spec(
    'log.preview',
    'int',
    'bytes of each payload shown in the log (the full size is always shown)',
    BYTES,
  ),
  spec(
    'log.payloads',
    'enum',
    'message content in json lines: a preview, or in full (for wirelog replay; every message is in the file)',
    'one of: preview, full',
    ['preview', 'full'],
  ),
  spec(
    'log.payloadMax',
    'int',
    'with --log-payloads full: most bytes of one message recorded (longer ones are marked truncated)',
    BYTES,
  ),
  spec(
    'log.flushInterval',
    'int',
    'longest time in milliseconds a line waits in memory before it is written',
    MS,
  ),
  spec(
    'log.maxBuffer',
    'int',
    'bytes of unwritten lines held while the file is unwritable; beyond, lines are dropped and counted',
    BYTES,
  ),
  spec(
    'log.rotate.size',
    'int',
    'rotate the log when it reaches this many bytes (0 = never by size)',
    BYTES,
  ),
  spec(
    'log.rotate.interval',
    'int',
    'rotate the log every this many seconds (0 = never by time)',
    WHOLE_SECONDS,
  ),
  spec('log.rotate.keep', 'int', 'rotated files kept (file.1 … file.N)', INT),
  spec(
    'log.redact',
    'list',
    'extra query parameters / headers whose values the log redacts',
    'a comma-separated list of names',
  ),
  spec(
    'log.chain',
    'bool',
    'end every line with a SHA-256 hash chaining it to the line before (json format; wirelog verify-log checks it)',
    BOOL,
  ),
  spec(
    'log.sign.key',
    'string',
    'seal the chain head with this key: an HMAC secret file or an Ed25519 PEM private key (implies --log-chain)',
    'a file path',
    { arg: '<file>' },
  ),
  spec('log.sign.every', 'int', 'lines between two seals (0 = by time only)', INT),
  spec(
    'log.sign.interval',
    'number',
    'seconds between two seals while lines arrive (0 = by count only)',
    SECONDS,
  ),
  spec(
    'limits.maxPayload',
    'int',
    'largest message in bytes, after decompression (bigger → close 1009)',
    BYTES,
  ),
  spec('limits.maxFragments', 'int', 'most fragments per message (0 = maxPayload / 64)', INT),
  spec(
    'limits.maxConnections',
    'int',
    'most simultaneous clients (0 = unlimited; over → 503)',
    INT,
  ),
  spec(
    'limits.maxConnectionsPerIp',
    'int',
    'most simultaneous clients from one IP (0 = unlimited; over → 503)',
    INT,
  ),
  spec(
    'limits.maxBufferedBytes',
    'int',
    'outbound bytes queued for one client before it is closed as a slow consumer (4000)',
    BYTES,
  ),
  spec(
    'limits.rateLimit',
    'int',
    'messages per second per client, bursts of 2× (0 = unlimited)',
    INT,
  ),
  spec(
    'limits.rateLimitAction',
    'enum',
    'over the rate limit: drop the message, or close (1008)',
    'one of: drop, close',
    ['drop', 'close'],
  ),
  spec(
    'limits.headersTimeout',
    'int',
    'milliseconds a client has to send the complete upgrade request headers',
    MS,
  ),
  // —— topics, sessions, authentication ——
  named(
    '--max-subscriptions',
    'pubsub.maxSubscriptions',
    'int',
    'subscriptions one client may hold',
    INT,
  ),
  named(
    '--max-data-bytes',
    'pubsub.maxDataBytes',
    'int',
    'largest publish/send data, in bytes of JSON',
    BYTES,
  ),
  named(
    '--history-size',
    'pubsub.historySize',
    'int',
    'messages of history kept per topic (0 = none)',
    INT,
  ),
  named(
    '--history-ttl',
    'pubsub.historyTtl',
    'int',
    'seconds a message stays in history',
    WHOLE_SECONDS,
  ),
  named('--history-topics', 'pubsub.historyTopics', 'int', 'topics whose history is kept', INT),
  named(
    '--session-ttl',
    'pubsub.sessionTtl',
    'int',
    'seconds a disconnected session can be resumed',
    WHOLE_SECONDS,
  ),
  named(
    '--dedupe-ttl',
    'pubsub.dedupeTtl',
    'int',
    'seconds a publish id is remembered (idempotent retries)',
    WHOLE_SECONDS,
  ),
  named(
    '--auth-rules',
    'pubsub.rules',
    'string',
    'authorization rules file (JSON)',
    'a file path',
    { arg: '<path>' },
  ),
  named(
    '--auth',
    'auth.mode',
    'enum',
    'authentication at the upgrade',
    'one of: none, tokens, jwt',
    ['none', 'tokens', 'jwt'],
  ),
  named(
    '--auth-tokens',
    'auth.tokensFile',
    'string',
    'static tokens file (JSON) for --auth tokens',
    'a file path',
    { arg: '<path>' },
  ),
  named(
    '--jwt-key',
    'auth.jwt.key',
    'string',
    'JWT key file: PEM public key/certificate, JWK, or HMAC secret',
    'a file path',
    { arg: '<path>' },
  ),
  named(
    '--jwks-file',
    'auth.jwt.jwksFile',
    'string',
    'JWKS file (re-read on an unknown key id)',
    'a file path',
    { arg: '<path>' },
  ),
  named(
    '--jwks-url',
    'auth.jwt.jwksUrl',
    'string',
    'JWKS URL (cached, refetched on rotation)',
    'a URL',
    { arg: '<url>' },
  ),
  named('--jwt-issuer', 'auth.jwt.issuer', 'string', 'required JWT issuer (iss)', 'any text'),
  named('--jwt-audience', 'auth.jwt.audience', 'string', 'required JWT audience (aud)', 'any text'),
  named(
    '--jwt-algorithms',
    'auth.jwt.algorithms',
    'list',
    'accepted JWT algorithms',
    `a comma-separated list of: ${JWT_ALGORITHMS.join(', ')}`,
  ),
  named(
    '--jwt-clock-skew',
    'auth.jwt.clockSkew',
    'int',
    'seconds of clock skew tolerated',
    WHOLE_SECONDS,
  ),
  named(
    '--jwt-user-claim',
    'auth.jwt.userClaim',
    'string',
    'JWT claim holding the user id',
    'a claim name',
    { arg: '<name>' },
  ),
  named(
    '--jwt-permissions-claim',
    'auth.jwt.permissionsClaim',
    'string',
    'JWT claim holding topic permissions',
    'a claim name',
    { arg: '<name>' },
  ),
  // —— TLS ——
  named(
    '--tls-cert',
    'tls.cert',
    'string',
    'PEM certificate file: serve wss:// (with --tls-key; reloaded on SIGHUP)',
    'a file path',
    { arg: '<path>' },
  ),
  named('--tls-key', 'tls.key', 'string', 'PEM private key file of --tls-cert', 'a file path', {
    arg: '<path>',
  }),
  named(
    '--tls-ca',
    'tls.ca',
    'string',
    'PEM file of the CAs that sign client certificates',
    'a file path',
    { arg: '<path>' },
  ),
  named(
    '--tls-client-cert',
    'tls.clientCert',
    'enum',
    'client certificates: not asked for, asked for, or required (signed by --tls-ca)',
    'one of: none, request, require',
    ['none', 'request', 'require'],
  ),
  // —— scale-out: broker, workers, forwarding ——
  named(
    '--broker',
    'broker.type',
    'enum',
    'where topics, sessions and presence live: this process, or Redis (many nodes)',
    'one of: memory, redis',
    ['memory', 'redis'],
  ),
  named(
    '--redis-url',
    'broker.redis.url',
    'string',
    'Redis of the redis broker (rediss:// for TLS; user:password@ for auth)',
    'a redis:// or rediss:// URL',
  ),
  named(
    '--redis-prefix',
    'broker.redis.prefix',
    'string',
    'prefix of every Redis key and channel (deployments sharing a Redis differ)',
    'a string of 1 to 64 characters',
  ),
  named(
    '--redis-connect-timeout',
    'broker.redis.connectTimeout',
    'int',
    'milliseconds to connect to Redis at start-up',
    MS,
  ),
  named(
    '--redis-command-timeout',
    'broker.redis.commandTimeout',
    'int',
    'milliseconds a command waits to be sent while Redis is unreachable',
    MS,
  ),
  named(
    '--redis-reply-timeout',
    'broker.redis.replyTimeout',
    'int',
    'milliseconds to wait for a reply from Redis',
    MS,
  ),
  named(
    '--redis-max-queue',
    'broker.redis.maxQueue',
    'int',
    'commands in flight toward Redis before new ones are refused',
    INT,
  ),
  named(
    '--redis-node-ttl',
    'broker.redis.nodeTtl',
    'int',
    'milliseconds a node stays alive in Redis without a heartbeat',
    MS,
  ),
  named(
    '--workers',
    'workers',
    'count',
    'processes sharing the port (auto = one per CPU)',
    'a whole number from 1 to 256, or auto',
  ),
  named(
    '--forward-events',
    'forward.events',
    'list',
    'events forwarded (patterns of the event name, * = any characters)',
    'a comma-separated list of patterns',
  ),
  named(
    '--forward-backlog',
    'forward.backlog',
    'int',
    'lines held per destination while it is slow or down',
    INT,
  ),
  named(
    '--forward-redis-stream',
    'forward.redis.stream',
    'string',
    'Redis Stream key that gets every forwarded event (XADD)',
    'a key name',
  ),
  named(
    '--forward-redis-url',
    'forward.redis.url',
    'string',
    'Redis of the forwarding stream (default: --redis-url)',
    'a redis:// or rediss:// URL',
  ),
  named(
    '--forward-redis-maxlen',
    'forward.redis.maxLen',
    'int',
    'approximate length of the forwarding stream (MAXLEN ~)',
    INT,
  ),
  named(
    '--forward-nats-subject',
    'forward.nats.subject',
    'string',
    'NATS subject that gets every forwarded event',
    'a subject',
  ),
  named(
    '--forward-nats-url',
    'forward.nats.url',
    'string',
    'NATS server(s) for forwarding, comma-separated',
    'a nats:// URL',
  ),
  named(
    '--webhook',
    'webhooks',
    'webhook',
    'POST matching events to a URL (repeatable; EVENTS is a comma-separated list of patterns, * = any characters)',
    'EVENTS=URL',
  ),
  named(
    '--webhook-secret',
    'webhookSecret',
    'string',
    'HMAC-SHA256 key signing every webhook delivery (Wirelog-Signature)',
    'any text',
  ),
]

/**
 * Config keys that have no flag: what the README's configuration table says about them.
 * `library` marks keys only code can set (their values are objects or functions).
 */
export const KEY_DOCS: Readonly<Record<string, { help: string; type?: string; library?: true }>> = {
  behaviour: {
    help: "`echo` replies to every message, `silent` receives and logs only, `pubsub` speaks wirelog.v1 to every client; a `Behaviour` object (`echo('> ')`, your own) is library only",
    type: '"echo" | "silent" | "pubsub" | Behaviour',
  },
  'pubsub.authorize': {
    help: 'authorization hook: `(client, op, topic) => boolean | undefined` (undefined leaves it to the rules)',
    type: 'AuthorizeHook',
    library: true,
  },
  protocols: {
    help: 'behaviours per subprotocol: a client offering one of these names in `Sec-WebSocket-Protocol` gets that behaviour',
    type: '{ [subprotocol]: Behaviour }',
    library: true,
  },
  admit: {
    help: 'admission hooks run before the 101, after the built-in rules (see `AdmissionHook`)',
    type: 'AdmissionHook | AdmissionHook[]',
    library: true,
  },
  perMessageDeflate: {
    help: 'permessage-deflate: `false` (off), or an object of its limits (`{}` for the defaults below, which is what `--per-message-deflate` sets)',
  },
  'perMessageDeflate.threshold': {
    help: 'only compress outgoing messages at least this many bytes big',
  },
  'perMessageDeflate.level': { help: 'zlib level for outgoing messages' },
  auth: { help: 'authentication at the upgrade (see Topics, authentication and sessions)' },
  'auth.jwt': { help: 'JWT verification: exactly one of `key`, `jwksFile`, `jwksUrl`' },
  'auth.jwt.jwksCacheMaxAge': { help: 'seconds a fetched JWKS is trusted before it is refetched' },
  'auth.jwt.jwksCooldown': { help: 'fewest seconds between two JWKS fetches' },
  pubsub: { help: 'topics, history and sessions of `wirelog.v1`' },
  broker: { help: 'where topics, sessions and presence live' },
  webhooks: {
    help: 'HTTP endpoints that get matching events as signed POSTs: `{ events, url, secret?, timeout?, retries?, retryDelay?, maxRetryDelay?, concurrency?, queue?, queueBytes?, overflow? }` (see [docs/webhooks.md](docs/webhooks.md)); `--webhook EVENTS=URL` adds one with the defaults',
    type: 'Webhook[]',
  },
  tls: {
    help: '`wss://` with a certificate and key, optionally client certificates (see docs/tls.md)',
  },
}

const byPath = new Map(OPTIONS.map((o) => [o.path, o]))

/** The default of every option, as `--help` shows it. */
export function defaults(): Config {
  return configSchema.parse({})
}

/** Read a dotted path out of a config object. */
export function getPath(obj: unknown, path: string): unknown {
  let cur: unknown = obj
  for (const key of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string, unknown>)[key]
  }
  return cur
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.')
  let cur = obj
  for (let i = 0; i < keys.length - 1; i++) {
    const k = keys[i]!
    if (cur[k] === null || typeof cur[k] !== 'object') cur[k] = {}
    cur = cur[k] as Record<string, unknown>
  }
  cur[keys[keys.length - 1]!] = value
}

// --- Reading the schema (ranges for messages, key names for suggestions, the README table) ---

/**
 * A schema node as this module reads it: its kind and children, read once through zod's
 * public schema API (`instanceof`, `shape`, `element`, `options`, `unwrap()`, `minValue`, …).
 */
export interface SchemaNode {
  readonly def: {
    readonly type: string
    readonly innerType?: SchemaNode
    readonly in?: SchemaNode
    readonly options?: readonly SchemaNode[]
    readonly shape?: Readonly<Record<string, SchemaNode>>
    readonly element?: SchemaNode
    readonly values?: readonly unknown[]
    readonly entries?: Readonly<Record<string, unknown>>
    readonly defaultValue?: unknown
  }
  readonly minValue?: number | null
  readonly maxValue?: number | null
  readonly isInt?: boolean
  readonly minLength?: number | null
}

const nodes = new WeakMap<z.ZodTypeAny, SchemaNode>()

/** The `SchemaNode` of a zod schema (children are read when asked for). */
function node(s: z.ZodTypeAny): SchemaNode {
  const known = nodes.get(s)
  if (known) return known
  let def: SchemaNode['def']
  // Refinements (`.refine`, `.superRefine`) wrap the schema they check.
  if (s instanceof z.ZodEffects) def = { type: 'pipe', in: node(s.innerType()) }
  else if (s instanceof z.ZodObject) {
    const shape: Record<string, SchemaNode> = {}
    for (const [k, v] of Object.entries(s.shape as Record<string, z.ZodTypeAny>)) shape[k] = node(v)
    def = { type: 'object', shape }
  } else if (s instanceof z.ZodArray) def = { type: 'array', element: node(s.element) }
  else if (s instanceof z.ZodUnion || s instanceof z.ZodDiscriminatedUnion) {
    const opts = [...(s.options as Iterable<z.ZodTypeAny>)].map(node)
    def = { type: 'union', options: opts }
  } else if (s instanceof z.ZodEnum)
    def = {
      type: 'enum',
      entries: Object.fromEntries((s.options as string[]).map((v) => [v, v])),
    }
  else if (s instanceof z.ZodLiteral) def = { type: 'literal', values: [s.value] }
  else if (s instanceof z.ZodDefault) {
    // The default is what the schema makes of a missing value.
    const r = s.safeParse(undefined)
    def = {
      type: 'default',
      innerType: node(s.removeDefault()),
      defaultValue: r.success ? r.data : undefined,
    }
  } else if (s instanceof z.ZodOptional) def = { type: 'optional', innerType: node(s.unwrap()) }
  else if (s instanceof z.ZodNullable) def = { type: 'nullable', innerType: node(s.unwrap()) }
  else def = { type: s.constructor.name.replace(/^Zod/, '').toLowerCase() }
  const n: SchemaNode =
    s instanceof z.ZodNumber
      ? { def, minValue: s.minValue, maxValue: s.maxValue, isInt: s.isInt }
      : s instanceof z.ZodString
        ? { def, minLength: s.minLength }
        : { def }
  nodes.set(s, n)
  return n
}

const WRAPPERS = new Set(['default', 'optional', 'nullable'])

/** The schema inside defaults, optionals and pipes. */
export function unwrap(s: SchemaNode): SchemaNode {
  for (;;) {
    if (WRAPPERS.has(s.def.type) && s.def.innerType) s = s.def.innerType
    else if (s.def.type === 'pipe' && s.def.in) s = s.def.in
    else return s
  }
}

/** The members of a union (or the schema itself). */
export function alternatives(s: SchemaNode): SchemaNode[] {
  const u = unwrap(s)
  return u.def.type === 'union' ? (u.def.options ?? []).flatMap(alternatives) : [u]
}

/** The object schema a key path descends into (a section, or an object member of a union). */
function objectOf(s: SchemaNode): SchemaNode | undefined {
  return alternatives(s).find((a) => a.def.type === 'object')
}

/** The schema of one dotted config path, undefined for an unknown path. */
export function schemaAt(path: string): SchemaNode | undefined {
  let s: SchemaNode | undefined = node(configSchema)
  for (const key of path.split('.')) {
    // An index into a list of objects (`webhooks.0.retries`): the element's schema.
    const list: SchemaNode | undefined = s && alternatives(s).find((a) => a.def.type === 'array')
    if (list?.def.element && /^\d+$/.test(key)) {
      s = list.def.element
      continue
    }
    const shape: Readonly<Record<string, SchemaNode>> | undefined = s && objectOf(s)?.def.shape
    s = shape && Object.hasOwn(shape, key) ? shape[key] : undefined
    if (!s) return undefined
  }
  return s
}

/** Every config key, sections included, depth first in schema order. */
export function configPaths(): string[] {
  const out: string[] = []
  const walk = (s: SchemaNode, prefix: string): void => {
    const shape = objectOf(s)?.def.shape
    if (!shape) return
    for (const [k, v] of Object.entries(shape)) {
      const path = prefix ? `${prefix}.${k}` : k
      out.push(path)
      walk(v, path)
    }
  }
  walk(node(configSchema), '')
  return out
}

export interface NumberRange {
  readonly min: number | undefined
  readonly max: number | undefined
  readonly int: boolean
}

const unbounded = (v: number | null | undefined): boolean =>
  v === null || v === undefined || !Number.isFinite(v) || Math.abs(v) >= Number.MAX_SAFE_INTEGER

/** The accepted range of a numeric option, from the schema. */
export function numberRange(path: string): NumberRange | undefined {
  const s = schemaAt(path)
  const n = s && alternatives(s).find((a) => a.def.type === 'number')
  if (!n) return undefined
  return {
    min: unbounded(n.minValue) ? undefined : n.minValue!,
    max: unbounded(n.maxValue) ? undefined : n.maxValue!,
    int: n.isInt === true,
  }
}

/** ` from 1 to 100`, ` (at least 1)`, … */
export function rangeText(r: NumberRange): string {
  if (r.min !== undefined && r.max !== undefined) return ` from ${r.min} to ${r.max}`
  if (r.min !== undefined) return ` (at least ${r.min})`
  if (r.max !== undefined) return ` (at most ${r.max})`
  return ''
}

/** What an option accepts, with the range the schema allows for numbers. */
export function acceptsText(opt: OptionSpec): string {
  if ((opt.kind === 'int' || opt.kind === 'number') && !/\bfrom -?\d/.test(opt.accepts)) {
    const r = numberRange(opt.path)
    if (r) return opt.accepts + rangeText(r)
  }
  return opt.accepts
}

// --- Suggestions ---

const normal = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]/g, '')

/** Edits tolerated between a misspelt name and a suggestion, by the name's length. */
const tolerance = (n: number): number => (n <= 3 ? 1 : n <= 8 ? 2 : 3)

export interface Candidate {
  /** What to suggest. */
  readonly name: string
  /** Spellings it may have been meant as (compared without case, dots, dashes, underscores). */
  readonly forms: readonly string[]
}

/**
 * The names `input` was most likely meant as: those with a form equal to it (ignoring case
 * and separators, so `logDir` finds `log.dir` and `format` finds `log.format`), else the
 * ones within a few edits.
 */
export function suggest(
  input: string | readonly string[],
  candidates: readonly Candidate[],
): string[] {
  const inputs = (typeof input === 'string' ? [input] : input).map(normal).filter(Boolean)
  const norm = candidates.map((c) => ({ name: c.name, forms: c.forms.map(normal) }))
  const exact = norm.filter((c) => c.forms.some((f) => inputs.includes(f))).map((c) => c.name)
  if (exact.length > 0) return [...new Set(exact)].slice(0, 3)
  let best = Number.POSITIVE_INFINITY
  let names: string[] = []
  for (const c of norm) {
    let d = Number.POSITIVE_INFINITY
    for (const i of inputs) {
      for (const f of c.forms) {
        const e = editDistance(i, f)
        if (e <= tolerance(i.length)) d = Math.min(d, e)
      }
    }
    if (d < best) {
      best = d
      names = [c.name]
    } else if (d === best && d < Number.POSITIVE_INFINITY) names.push(c.name)
  }
  return [...new Set(names)].slice(0, 3)
}

/** ` (did you mean "a"?)`, ` (did you mean "a" or "b"?)`, or '' */
export function didYouMean(names: readonly string[], quote = true): string {
  if (names.length === 0) return ''
  const q = names.map((n) => (quote ? `"${n}"` : n))
  const list = q.length === 1 ? q[0] : `${q.slice(0, -1).join(', ')} or ${q[q.length - 1]}`
  return ` (did you mean ${list}?)`
}

const keyCandidates = (): Candidate[] =>
  configPaths().map((p) => ({ name: p, forms: [p, p.slice(p.lastIndexOf('.') + 1)] }))

/** Suggestions for an unknown (dotted) config key. */
export function suggestKey(path: string): string[] {
  const last = path.slice(path.lastIndexOf('.') + 1)
  return suggest([path, last], keyCandidates())
}

// --- Strings from argv and the environment ---

/** Turn one string (from argv or env) into the value the schema expects, or throw naming `name`. */
export function coerce(opt: OptionSpec, raw: string, name: string): unknown {
  const bad = (): never => {
    throw new ConfigError(`${name}: expected ${acceptsText(opt)}, got ${JSON.stringify(raw)}`)
  }
  switch (opt.kind) {
    case 'string':
      return raw
    case 'int': {
      if (!/^-?\d+$/.test(raw.trim())) bad()
      return Number(raw)
    }
    case 'number': {
      // Seconds may carry their unit (`10s`).
      const n = Number(opt.accepts === SECONDS ? raw.replace(/(?<=\d)s$/, '') : raw)
      if (raw.trim() === '' || !Number.isFinite(n)) bad()
      return n
    }
    case 'bool': {
      const v = raw.trim().toLowerCase()
      if (['true', '1', 'yes', 'on', ''].includes(v))
        return opt.path === 'perMessageDeflate' ? {} : true
      if (['false', '0', 'no', 'off'].includes(v)) return false
      return bad()
    }
    case 'enum':
      if (!opt.values!.includes(raw)) bad()
      return raw
    case 'trust': {
      const v = raw.trim().toLowerCase()
      if (['true', 'yes', 'on', ''].includes(v)) return true
      if (['false', 'no', 'off'].includes(v)) return false
      if (/^\d+$/.test(v)) return Number(v)
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0)
    }
    case 'count': {
      const v = raw.trim().toLowerCase()
      if (v === 'auto') return 'auto'
      if (!/^\d+$/.test(v)) bad()
      return Number(v)
    }
    case 'list':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0)
    case 'webhook':
      try {
        // The variable may list several endpoints; a flag is one (repeat it for more).
        return parseWebhookFlag(raw, !name.startsWith('--'))
      } catch (err) {
        throw new ConfigError(`${name}: ${(err as Error).message}`)
      }
  }
}

/** The variable naming the config file (not an option of its own). */
export const CONFIG_ENV = 'WIRELOG_CONFIG'

/** Set by the `--workers` primary on each worker: its slot number (not an option). */
export const WORKER_SLOT_ENV = 'WIRELOG_WORKER_SLOT'

/**
 * Values from `WIRELOG_*` environment variables. Throws one `ConfigError` listing every
 * variable whose value is malformed.
 */
export function fromEnv(env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const problems: string[] = []
  for (const opt of OPTIONS) {
    const raw = env[opt.env]
    if (raw === undefined) continue
    try {
      setPath(out, opt.path, coerce(opt, raw, opt.env))
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      problems.push(...err.problems)
    }
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return out
}

/** A warning for every `WIRELOG_*` variable that is not one of ours, with a suggestion. */
export function unknownEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const known = new Set([CONFIG_ENV, WORKER_SLOT_ENV, ...OPTIONS.map((o) => o.env)])
  const candidates: Candidate[] = [
    { name: CONFIG_ENV, forms: ['config'] },
    ...OPTIONS.map((o) => ({
      name: o.env,
      forms: [o.env.slice(8), o.path, o.path.slice(o.path.lastIndexOf('.') + 1)],
    })),
  ]
  return Object.keys(env)
    .filter((k) => k.startsWith('WIRELOG_') && !known.has(k))
    .sort()
    .map(
      (k) =>
        `ignoring unknown environment variable ${k}${didYouMean(suggest(k.slice(8), candidates), false)}`,
    )
}

/** `permission denied (EACCES)` for a Node system error, else its message. */
export function systemMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  if (typeof e?.code !== 'string' || typeof e.message !== 'string') return String(err)
  const text = e.message
    .replace(new RegExp(`^(\\w+ )?${e.code}:? `), '')
    .replace(/, \w+ '[^']*'( -> '[^']*')?$/, '')
  return `${text} (${e.code})`
}

/** Values from a JSON config file (same shape as `createServer()` options). */
export function fromFile(file: string, name = '--config'): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError(`${name}: cannot read ${file}: ${systemMessage(err)}`)
  }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON: ${(err as Error).message}`)
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new ConfigError(`${file}: expected a JSON object of options, got ${typeName(v)}`)
  return v as Record<string, unknown>
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`
}

/** Apply one parsed flag value onto a partial options object. */
export function applyOption(
  target: Record<string, unknown>,
  opt: OptionSpec,
  value: unknown,
): void {
  setPath(target, opt.path, value)
}

/** Deep-merge plain objects (arrays and scalars replace). */
export function merge(...layers: Record<string, unknown>[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const layer of layers) mergeInto(out, layer)
  return out
}

function mergeInto(dst: Record<string, unknown>, src: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(src)) {
    const cur = dst[k]
    if (isPlain(v) && isPlain(cur)) mergeInto(cur, v)
    else dst[k] = isPlain(v) ? merge(v) : v
  }
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** Keys holding user objects (behaviours, hooks): never frozen, they are the user's. */
const USER_OBJECTS = new Set(['behaviour', 'protocols', 'admit', 'authorize'])

function deepFreeze<T>(obj: T): T {
  if (obj !== null && typeof obj === 'object') {
    for (const [k, v] of Object.entries(obj)) if (!USER_OBJECTS.has(k)) deepFreeze(v)
    Object.freeze(obj)
  }
  return obj
}

// --- Validation ---

/** Where a value came from, so a message can name it the way the user wrote it. */
export interface ValueSource {
  /** A flag or environment variable (`--port`, `WIRELOG_PORT`). */
  readonly name?: string
  /** The config file the value is in. */
  readonly file?: string
  /** The text as written (flags and environment), shown instead of the parsed value. */
  readonly raw?: string
}

function show(v: unknown): string {
  if (typeof v === 'function') return 'a function'
  let s: string | undefined
  try {
    s = JSON.stringify(v)
  } catch {}
  s ??= String(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

interface Issue {
  readonly code: string
  readonly path: readonly PropertyKey[]
  readonly message: string
  readonly keys?: readonly string[]
  readonly params?: { readonly alone?: boolean }
}

/** One line per mistake in `issue`. */
function problemsOf(
  issue: Issue,
  options: unknown,
  sourceOf: ((path: string) => ValueSource | undefined) | undefined,
): Array<[path: string, text: string]> {
  const at = issue.path.map(String).join('.')
  if (issue.code === 'custom' && issue.params?.alone) {
    const src = sourceOf?.(at)
    const label = src?.name ?? (src?.file ? `${src.file}: option "${at}"` : `option "${at}"`)
    return [[at, `${label}: ${issue.message}`]]
  }
  if (issue.code === 'unrecognized_keys') {
    return (issue.keys ?? []).map((k) => {
      const path = at ? `${at}.${k}` : k
      const src = sourceOf?.(path)
      const where = src?.file ? `${src.file}: ` : src?.name ? `${src.name}: ` : ''
      return [path, `${where}unknown option "${path}"${didYouMean(suggestKey(path))}`]
    })
  }
  const opt = byPath.get(at)
  const src = sourceOf?.(at)
  const label =
    src?.name ?? (src?.file ? `${src.file}: option "${at}"` : at ? `option "${at}"` : 'options')
  const range = opt ? undefined : numberRange(at)
  const expected = opt
    ? `expected ${acceptsText(opt)}`
    : range
      ? `expected ${range.int ? 'an integer' : 'a number'}${rangeText(range)}`
      : issue.message.replace(/^Invalid input: /, '')
  const why = opt && issue.code === 'custom' ? ` (${issue.message})` : ''
  const value = src?.raw ?? getPath(options, at)
  const got = value === undefined ? '' : `, got ${show(value)}`
  return [[at, `${label}: ${expected}${got}${why}`]]
}

/** Every dotted path of a plain object, in the order it is written. */
function writtenOrder(obj: unknown, prefix = '', out = new Map<string, number>()) {
  if (isPlain(obj)) {
    for (const [k, v] of Object.entries(obj)) {
      const p = prefix ? `${prefix}.${k}` : k
      out.set(p, out.size)
      writtenOrder(v, p, out)
    }
  }
  return out
}

/**
 * Validate options into a frozen `Config`. Bad values throw one `ConfigError` listing every
 * mistake, each naming the option and what it accepts; unknown keys come with the nearest
 * known key. `sourceOf` may say where a value came from (the CLI names the flag, environment
 * variable or file).
 */
export function resolveConfig(
  options: WirelogOptions | Record<string, unknown> = {},
  sourceOf?: (path: string) => ValueSource | undefined,
): Config {
  const result = configSchema.safeParse(options)
  if (!result.success) {
    const order = writtenOrder(options)
    const lines = result.error.issues
      .flatMap((i) => problemsOf(i as Issue, options, sourceOf))
      .map(([path, text], i) => ({ text, rank: order.get(path) ?? order.size + i }))
      .sort((a, b) => a.rank - b.rank)
      .map((p) => p.text)
    throw new ConfigError([...new Set(lines)])
  }
  return deepFreeze(result.data)
}
