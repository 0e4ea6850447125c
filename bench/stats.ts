/**
 * Small statistics: medians and ranges across rounds, percentiles of latency samples.
 */

export interface Summary {
  n: number
  median: number
  min: number
  max: number
}

/** Median and range of the finite values; undefined when there are none. */
export function summarize(values: readonly number[]): Summary | undefined {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return undefined
  return { n: v.length, median: quantileSorted(v, 0.5), min: v[0]!, max: v[v.length - 1]! }
}

/**
 * Quantile of sorted values, interpolating between the two nearest ranks (so the median of
 * an even count is the mean of the middle two).
 */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length
  if (n === 0) return Number.NaN
  if (n === 1) return sorted[0]!
  const pos = (n - 1) * Math.min(1, Math.max(0, q))
  const lo = Math.floor(pos)
  const hi = Math.min(n - 1, lo + 1)
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo)
}

export interface Percentiles {
  n: number
  mean: number
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
}

/**
 * Percentiles of the first `n` samples (sorted in place). Exact: the samples of one
 * measurement window are few enough (rate × duration) to keep and sort.
 */
export function percentiles(samples: Float64Array, n: number): Percentiles {
  const s = samples.subarray(0, n).sort()
  let sum = 0
  for (let i = 0; i < n; i++) sum += s[i]!
  return {
    n,
    mean: n > 0 ? sum / n : Number.NaN,
    p50: quantileSorted(s, 0.5),
    p90: quantileSorted(s, 0.9),
    p99: quantileSorted(s, 0.99),
    p999: quantileSorted(s, 0.999),
    max: n > 0 ? s[n - 1]! : Number.NaN,
  }
}

/**
 * A FIFO of times (ms), one per message in flight on a connection: a growable ring, so a
 * steady state allocates nothing. `push` refuses (false) past `max` entries.
 */
export class TimeQueue {
  #buf = new Float64Array(64)
  #head = 0
  #count = 0
  readonly #max: number

  constructor(max = 1 << 20) {
    this.#max = max
  }

  get length(): number {
    return this.#count
  }

  push(t: number): boolean {
    if (this.#count === this.#buf.length) {
      if (this.#buf.length >= this.#max) return false
      const bigger = new Float64Array(this.#buf.length * 2)
      for (let i = 0; i < this.#count; i++)
        bigger[i] = this.#buf[(this.#head + i) % this.#buf.length]!
      this.#buf = bigger
      this.#head = 0
    }
    this.#buf[(this.#head + this.#count) % this.#buf.length] = t
    this.#count++
    return true
  }

  /** The oldest time (NaN when empty). */
  shift(): number {
    if (this.#count === 0) return Number.NaN
    const t = this.#buf[this.#head]!
    this.#head = (this.#head + 1) % this.#buf.length
    this.#count--
    return t
  }
}

/** Latency samples of one measurement window, up to a fixed number. */
export class Samples {
  readonly #buf: Float64Array
  #n = 0

  constructor(max: number) {
    this.#buf = new Float64Array(Math.max(0, max))
  }

  add(v: number): void {
    if (this.#n < this.#buf.length) this.#buf[this.#n++] = v
  }

  get count(): number {
    return this.#n
  }

  percentiles(): Percentiles {
    return percentiles(this.#buf, this.#n)
  }
}
