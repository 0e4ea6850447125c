/**
 * Topic names and patterns.
 *
 * Grammar: dot-separated segments (`chat.room1`, `orders.eu.created`). A segment is 1–64
 * characters of `A–Z a–z 0–9 _ - : @ ~ !`; a topic has at most 16 segments and 256
 * characters. A pattern may use `*` for exactly one segment (`chat.*`) and `>` as its last
 * segment for one or more trailing segments (`orders.>`). Matching compares segments; no
 * regular expression is ever built from client input, so no pattern is expensive.
 */

export const MAX_TOPIC_LENGTH = 256
export const MAX_SEGMENTS = 16
const MAX_SEGMENT = 64
const SEGMENT = /^[A-Za-z0-9_\-:@~!]+$/
/** A whole valid concrete topic in one test (the common case, checked on every publish). */
const CONCRETE = /^[A-Za-z0-9_\-:@~!]{1,64}(?:\.[A-Za-z0-9_\-:@~!]{1,64}){0,15}$/
const OK_CONCRETE: TopicCheck = { ok: true, pattern: false }

export type TopicCheck = { ok: true; pattern: boolean } | { ok: false; reason: string }

/** Check a topic (`allowPattern` false) or a pattern against the grammar. */
export function checkTopic(s: unknown, allowPattern: boolean): TopicCheck {
  if (typeof s !== 'string') return { ok: false, reason: 'a topic must be a string' }
  if (s.length === 0) return { ok: false, reason: 'a topic cannot be empty' }
  if (s.length > MAX_TOPIC_LENGTH)
    return { ok: false, reason: `a topic is at most ${MAX_TOPIC_LENGTH} characters` }
  // Without splitting: a valid concrete topic is valid as a pattern too; anything else
  // (a wildcard, a mistake) takes the segment walk below, which says what is wrong.
  if (CONCRETE.test(s)) return OK_CONCRETE
  const segs = s.split('.')
  if (segs.length > MAX_SEGMENTS)
    return { ok: false, reason: `a topic has at most ${MAX_SEGMENTS} segments` }
  let pattern = false
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!
    if (seg === '*' || seg === '>') {
      if (!allowPattern) return { ok: false, reason: `"${seg}" is only allowed in patterns` }
      if (seg === '>' && i !== segs.length - 1)
        return { ok: false, reason: '">" must be the last segment' }
      pattern = true
      continue
    }
    if (seg.length === 0)
      return { ok: false, reason: 'empty segment (two dots, or a dot at an end)' }
    if (seg.length > MAX_SEGMENT)
      return { ok: false, reason: `a segment is at most ${MAX_SEGMENT} characters` }
    if (!SEGMENT.test(seg))
      return { ok: false, reason: 'segments use only letters, digits and _ - : @ ~ !' }
  }
  return { ok: true, pattern }
}

/** Whether the concrete `topic` matches `pattern` (which may be a concrete topic). */
export function matches(pattern: string, topic: string): boolean {
  if (pattern === topic) return true
  const p = pattern.split('.')
  const t = topic.split('.')
  for (let i = 0; i < p.length; i++) {
    const seg = p[i]!
    if (seg === '>') return t.length > i
    if (i >= t.length) return false
    if (seg !== '*' && seg !== t[i]) return false
  }
  return p.length === t.length
}

/**
 * Whether every topic matched by `inner` is also matched by `outer` (authorization: may a
 * client allowed `outer` subscribe to the pattern `inner`?).
 */
export function covers(outer: string, inner: string): boolean {
  if (outer === inner) return true
  const o = outer.split('.')
  const n = inner.split('.')
  for (let i = 0; i < o.length; i++) {
    const seg = o[i]!
    if (seg === '>') return n.length > i
    if (i >= n.length) return false
    const s = n[i]!
    if (s === '>') return false // inner reaches further than outer's fixed length
    if (seg === '*') continue
    if (s === '*' || s !== seg) return false
  }
  return o.length === n.length
}

interface TrieNode<T> {
  children: Map<string, TrieNode<T>> | undefined
  /** Subscribers whose pattern ends here. */
  here: Set<T> | undefined
  /** Subscribers of `<prefix>.>`. */
  rest: Set<T> | undefined
}

function node<T>(): TrieNode<T> {
  return { children: undefined, here: undefined, rest: undefined }
}

/**
 * Who is subscribed to what: exact topics in a map, patterns in a segment trie. `match()`
 * walks the trie once per published topic (its segments × the wildcards on the way).
 */
export class SubscriptionIndex<T> {
  #exact = new Map<string, Set<T>>()
  #root: TrieNode<T> = node()
  #patterns = 0

  /** Number of exact topics with subscribers. */
  get topics(): number {
    return this.#exact.size
  }

  /** Number of pattern subscriptions. */
  get patterns(): number {
    return this.#patterns
  }

  add(topicOrPattern: string, pattern: boolean, who: T): boolean {
    if (!pattern) {
      let set = this.#exact.get(topicOrPattern)
      if (set === undefined) {
        set = new Set()
        this.#exact.set(topicOrPattern, set)
      }
      const before = set.size
      set.add(who)
      return set.size > before
    }
    let cur = this.#root
    const segs = topicOrPattern.split('.')
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i]!
      if (seg === '>') {
        cur.rest ??= new Set()
        const before = cur.rest.size
        cur.rest.add(who)
        if (cur.rest.size > before) this.#patterns++
        return cur.rest.size > before
      }
      cur.children ??= new Map()
      let next = cur.children.get(seg)
      if (next === undefined) {
        next = node()
        cur.children.set(seg, next)
      }
      cur = next
    }
    cur.here ??= new Set()
    const before = cur.here.size
    cur.here.add(who)
    if (cur.here.size > before) this.#patterns++
    return cur.here.size > before
  }

  remove(topicOrPattern: string, pattern: boolean, who: T): void {
    if (!pattern) {
      const set = this.#exact.get(topicOrPattern)
      if (set?.delete(who) && set.size === 0) this.#exact.delete(topicOrPattern)
      return
    }
    const path: Array<[TrieNode<T>, string]> = []
    let cur: TrieNode<T> | undefined = this.#root
    const segs = topicOrPattern.split('.')
    for (const seg of segs) {
      if (seg === '>') {
        if (cur.rest?.delete(who)) this.#patterns--
        if (cur.rest?.size === 0) cur.rest = undefined
        break
      }
      const next: TrieNode<T> | undefined = cur.children?.get(seg)
      if (next === undefined) return
      path.push([cur, seg])
      cur = next
    }
    if (segs[segs.length - 1] !== '>') {
      if (cur.here?.delete(who)) this.#patterns--
      if (cur.here?.size === 0) cur.here = undefined
    }
    // Prune empty branches bottom-up so the trie does not keep dead paths.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, seg] = path[i]!
      const child = parent.children!.get(seg)!
      if (child.here || child.rest || (child.children && child.children.size > 0)) break
      parent.children!.delete(seg)
    }
  }

  /** Subscribers of exactly `topic` (no patterns). */
  exact(topic: string): ReadonlySet<T> | undefined {
    return this.#exact.get(topic)
  }

  /** Call `fn` for every subscriber matching `topic` (a subscriber may come more than once). */
  match(topic: string, fn: (who: T) => void): void {
    const set = this.#exact.get(topic)
    if (set !== undefined) for (const w of set) fn(w)
    if (this.#patterns === 0) return
    this.#walk(this.#root, topic.split('.'), 0, fn)
  }

  /** Whether anything matches `topic`. */
  has(topic: string): boolean {
    if (this.#exact.has(topic)) return true
    if (this.#patterns === 0) return false
    let found = false
    this.#walk(this.#root, topic.split('.'), 0, () => {
      found = true
    })
    return found
  }

  #walk(n: TrieNode<T>, segs: string[], i: number, fn: (who: T) => void): void {
    if (n.rest !== undefined && i < segs.length) for (const w of n.rest) fn(w)
    if (i === segs.length) {
      if (n.here !== undefined) for (const w of n.here) fn(w)
      return
    }
    const c = n.children
    if (c === undefined) return
    const exact = c.get(segs[i]!)
    if (exact !== undefined) this.#walk(exact, segs, i + 1, fn)
    const star = c.get('*')
    if (star !== undefined) this.#walk(star, segs, i + 1, fn)
  }
}
