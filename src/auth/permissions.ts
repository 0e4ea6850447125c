/**
 * Authorization of pubsub operations: may this client subscribe to / publish on / see the
 * presence or history of this topic, or send direct messages?
 *
 * Decided, in order, by: the library hook (`pubsub.authorize`) when it returns a boolean;
 * then the union of the patterns the credential carries (`client.user.permissions`) and
 * those a rules file grants the user; with neither, everything is allowed when
 * authentication is off and nothing when it is on (deny by default).
 */
import { readFileSync } from 'node:fs'
import type { Client, Permissions } from '../connection.js'
import { checkTopic, covers } from '../pubsub/topics.js'

export type TopicOp = 'subscribe' | 'publish' | 'presence' | 'history'
export type Op = TopicOp | 'send'

/**
 * Library hook: `true` allows, `false` denies, `undefined` leaves it to the rules. `topic` is
 * the topic or pattern (for `send`, the target as `client:<id>` or `user:<id>`).
 */
export type AuthorizeHook = (
  client: Client,
  op: Op,
  topic: string,
) => boolean | undefined | Promise<boolean | undefined>

interface Rule extends Permissions {
  /** User ids this rule applies to; `*` any authenticated user, `anonymous` unauthenticated clients. */
  readonly users: readonly string[]
}

/** Rules file: `{ "rules": [{ "users": ["*"], "subscribe": ["chat.>"], … }] }`. */
export function loadRules(file: string): readonly Rule[] {
  let parsed: { rules?: unknown }
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as { rules?: unknown }
  } catch (err) {
    throw new TypeError(`rules file ${file}: ${(err as Error).message}`)
  }
  if (!Array.isArray(parsed.rules))
    throw new TypeError(`rules file ${file}: expected { "rules": [ … ] }`)
  return parsed.rules.map((r: unknown, i: number) => {
    const rule = r as Partial<Rule>
    if (!Array.isArray(rule.users) || rule.users.some((u) => typeof u !== 'string'))
      throw new TypeError(`rules file ${file}: rules[${i}].users must be a list of user ids`)
    for (const op of ['subscribe', 'publish', 'presence', 'history'] as const) {
      const list = rule[op]
      if (list === undefined) continue
      if (!Array.isArray(list))
        throw new TypeError(`rules file ${file}: rules[${i}].${op} must be a list`)
      for (const p of list) {
        const c = checkTopic(p, true)
        if (!c.ok)
          throw new TypeError(
            `rules file ${file}: rules[${i}].${op}: ${JSON.stringify(p)}: ${c.reason}`,
          )
      }
    }
    return rule as Rule
  })
}

export interface Authorizer {
  allowed(client: Client, op: Op, topic: string): Promise<boolean>
}

export function createAuthorizer(o: {
  authRequired: boolean
  rules: readonly Rule[] | undefined
  hook: AuthorizeHook | undefined
}): Authorizer {
  const rulesFor = (user: string | undefined): Rule[] =>
    (o.rules ?? []).filter((r) =>
      r.users.some((u) => (user === undefined ? u === 'anonymous' : u === '*' || u === user)),
    )
  return {
    async allowed(client, op, topic) {
      if (o.hook !== undefined) {
        const d = await o.hook(client, op, topic)
        if (typeof d === 'boolean') return d
      }
      const grants: Permissions[] = []
      if (client.user?.permissions) grants.push(client.user.permissions)
      grants.push(...rulesFor(client.user?.id))
      if (grants.length === 0) return !o.authRequired && o.rules === undefined
      if (op === 'send') return grants.some((g) => g.send === true)
      return grants.some((g) =>
        (g[op] ?? []).some((p) => typeof p === 'string' && covers(p, topic)),
      )
    },
  }
}
