/**
 * What a webhook endpoint is, as the options give it: the `--webhook 'EVENTS=URL'` form,
 * the URL rule and the event patterns. Pure and small: the options module imports it to
 * validate flags; the delivery machinery (`./delivery.ts`) is loaded only when an endpoint
 * is configured.
 */

/** `http:` / `https:` only: a webhook is a POST over HTTP. */
export function isWebhookUrl(url: string): boolean {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return false
  }
  return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== ''
}

/** An event pattern: no whitespace, no `=`, `*` any characters, at most one `ns:` part. */
const PATTERN = /^[^\s=,]+$/

export function isEventPattern(p: string): boolean {
  return PATTERN.test(p) && p.split(':').length <= 2 && !p.startsWith(':') && !p.endsWith(':')
}

export const WEBHOOK_FLAG_FORM =
  'EVENTS=URL, e.g. "message.received,client.*=https://example.com/hook"'

/**
 * Parse `--webhook` values: `EVENTS=URL` where EVENTS is a comma-separated list of patterns
 * (the first `=` separates them: a URL may hold more). With `several` (the environment
 * variable), whitespace separates endpoints. Throws an Error whose message says what is wrong.
 */
export function parseWebhookFlag(
  raw: string,
  several = false,
): Array<{ events: string[]; url: string }> {
  const entries = several ? raw.split(/\s+/).filter((s) => s.length > 0) : [raw.trim()]
  if (entries.length === 0 || entries[0] === '')
    throw new Error(`expected ${WEBHOOK_FLAG_FORM}, got ${JSON.stringify(raw)}`)
  return entries.map((entry) => {
    const eq = entry.indexOf('=')
    if (eq < 0)
      throw new Error(
        `expected ${WEBHOOK_FLAG_FORM}, got ${JSON.stringify(entry)} (no "=" between the events and the URL)`,
      )
    const events = entry
      .slice(0, eq)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0)
    const url = entry.slice(eq + 1)
    if (events.length === 0)
      throw new Error(
        `expected ${WEBHOOK_FLAG_FORM}, got ${JSON.stringify(entry)} (no event pattern before "=")`,
      )
    const bad = events.find((e) => !isEventPattern(e))
    if (bad !== undefined)
      throw new Error(
        `bad event pattern ${JSON.stringify(bad)} in ${JSON.stringify(entry)} (an event name such as message.received, with * for any characters, app:order.* for a namespace)`,
      )
    if (!isWebhookUrl(url))
      throw new Error(`expected an http:// or https:// URL after "=", got ${JSON.stringify(url)}`)
    return { events, url }
  })
}

/**
 * Event patterns → a test of an event's name: the bare name for the server's `ws` events
 * (`client.connected`; `ws:client.connected` is the same), `ns:name` for others
 * (`app:order.created`). `*` stands for any characters, so `*` is every event, `client.*`
 * the client events and `app:*` everything in `app`.
 */
export function compilePatterns(patterns: readonly string[]): (event: string) => boolean {
  const norm = patterns.map((p) => (p.startsWith('ws:') ? p.slice(3) : p))
  if (norm.includes('*')) return () => true
  const exact = new Set(norm.filter((p) => !p.includes('*')))
  const globs = norm
    .filter((p) => p.includes('*'))
    .map((p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`))
  return (event) => exact.has(event) || globs.some((r) => r.test(event))
}
