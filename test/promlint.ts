/**
 * A checker for the Prometheus text exposition format (0.0.4) with the lint rules
 * `promtool check metrics` applies, so tests can validate `/metrics` without promtool:
 *
 * - every line is a `# HELP`, a `# TYPE`, another comment, a sample or empty;
 * - HELP and TYPE at most once per family, before its first sample; every family has HELP;
 * - metric and label names are valid (`[a-zA-Z_:][a-zA-Z0-9_:]*`, `[a-zA-Z_][a-zA-Z0-9_]*`,
 *   no `__` prefix), snake_case (no camelCase), no colons (reserved for recording rules);
 * - label values are quoted with only `\\`, `\"`, `\n` escapes; no label repeated in a sample;
 * - values parse as floats (`NaN`, `+Inf`, `-Inf` in any case, as Go's ParseFloat takes them),
 *   timestamps as integers;
 * - a family's samples are contiguous; no series appears twice;
 * - counters end in `_total`, other typed metrics do not; histogram buckets carry `le` and a `+Inf` bucket, other types
 *   carry no `le`/`quantile` reserved for them; summaries' `quantile` only on their samples;
 * - the text ends with a newline.
 *
 * Returns the problems found, each naming the line; an empty list means it passes.
 */

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])
const FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf(?:inity)?|nan)$/i

interface Family {
  name: string
  type: string | undefined
  help: boolean
  /** Line of the first sample, if any. */
  firstSample: number | undefined
  /** Buckets seen per label set (histograms): whether `+Inf` was among them. */
  infBucket: Map<string, boolean>
}

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Parse `{a="x",b="y"}` starting at `s[i] === '{'`; returns the labels and the index after `}`. */
function parseLabels(
  s: string,
  i: number,
  problem: (msg: string) => void,
): { labels: Record<string, string>; end: number } | undefined {
  const labels: Record<string, string> = {}
  i++ // '{'
  for (;;) {
    while (s[i] === ' ') i++
    if (s[i] === '}') return { labels, end: i + 1 }
    const m = /^[^=\s}]*/.exec(s.slice(i))!
    const name = m[0]
    i += name.length
    if (!LABEL_NAME.test(name)) problem(`invalid label name ${JSON.stringify(name)}`)
    else if (name.startsWith('__')) problem(`label name ${name} starts with "__" (reserved)`)
    if (name in labels) problem(`label ${name} repeated`)
    if (s[i] !== '=') {
      problem(`expected "=" after label ${name}`)
      return undefined
    }
    i++
    if (s[i] !== '"') {
      problem(`label ${name}: value must be quoted`)
      return undefined
    }
    i++
    let value = ''
    for (;;) {
      const c = s[i]
      if (c === undefined) {
        problem(`label ${name}: unterminated value`)
        return undefined
      }
      if (c === '"') break
      if (c === '\\') {
        const e = s[i + 1]
        if (e === '\\') value += '\\'
        else if (e === '"') value += '"'
        else if (e === 'n') value += '\n'
        else problem(`label ${name}: invalid escape \\${e ?? ''}`)
        i += 2
        continue
      }
      value += c
      i++
    }
    labels[name] = value
    i++ // closing quote
    while (s[i] === ' ') i++
    if (s[i] === ',') {
      i++
      continue
    }
    if (s[i] === '}') return { labels, end: i + 1 }
    problem(`expected "," or "}" after label ${name}`)
    return undefined
  }
}

function seriesKey(name: string, labels: Record<string, string>): string {
  return `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',')}}`
}

/** The family a sample name belongs to, given the families declared so far. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const exact = families.get(name)
  if (exact !== undefined) return exact
  for (const suffix of ['_bucket', '_sum', '_count', '_created']) {
    if (!name.endsWith(suffix)) continue
    const f = families.get(name.slice(0, -suffix.length))
    if (f !== undefined && (f.type === 'histogram' || f.type === 'summary')) {
      if (suffix === '_bucket' && f.type !== 'histogram') return undefined
      return f
    }
  }
  return undefined
}

export interface LintResult {
  problems: string[]
  samples: Sample[]
}

/** Check exposition `text`; see the module comment for the rules. */
export function promlint(text: string): LintResult {
  const problems: string[] = []
  const samples: Sample[] = []
  const families = new Map<string, Family>()
  const series = new Set<string>()
  const finished = new Set<Family>()
  let current: Family | undefined
  if (text.length > 0 && !text.endsWith('\n')) problems.push('the text does not end with "\\n"')
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()

  const declare = (name: string, lineNo: number): Family => {
    let f = families.get(name)
    if (f === undefined) {
      f = { name, type: undefined, help: false, firstSample: undefined, infBucket: new Map() }
      families.set(name, f)
    }
    if (f.firstSample !== undefined)
      problems.push(`line ${lineNo}: HELP/TYPE for ${name} after its samples`)
    return f
  }
  const checkName = (name: string, lineNo: number): boolean => {
    if (!METRIC_NAME.test(name)) {
      problems.push(`line ${lineNo}: invalid metric name ${JSON.stringify(name)}`)
      return false
    }
    if (name.includes(':'))
      problems.push(`line ${lineNo}: ${name}: colons are reserved for recording rules`)
    if (/[a-z][A-Z]/.test(name))
      problems.push(`line ${lineNo}: ${name}: metric names should be snake_case, not camelCase`)
    return true
  }

  lines.forEach((line, idx) => {
    const n = idx + 1
    const problem = (msg: string): void => {
      problems.push(`line ${n}: ${msg}`)
    }
    if (line.trim() === '') return
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line)
      if (m === null) return // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string | undefined]
      if (!checkName(name, n)) return
      const f = declare(name, n)
      if (current !== undefined && current !== f) finished.add(current)
      if (finished.has(f)) problem(`${name}: HELP/TYPE after the family was already exposed`)
      current = f
      if (kind === 'HELP') {
        if (f.help) problem(`${name}: second HELP line`)
        f.help = true
        if (rest === undefined || rest.trim() === '') problem(`${name}: empty HELP text`)
        else if (/\\(?![\\n])/.test(rest)) problem(`${name}: invalid escape in HELP text`)
      } else {
        if (f.type !== undefined) problem(`${name}: second TYPE line`)
        const type = (rest ?? '').trim()
        if (!TYPES.has(type)) problem(`${name}: unknown type ${JSON.stringify(type)}`)
        f.type = type
        if (type === 'counter' && !name.endsWith('_total'))
          problem(`${name}: counter metrics should have "_total" suffix`)
        if (type !== 'counter' && name.endsWith('_total'))
          problem(`${name}: non-counter metrics should not have "_total" suffix`)
      }
      return
    }
    // A sample: name, optional labels, value, optional timestamp.
    const nm = /^[^\s{]*/.exec(line)![0]
    if (!checkName(nm, n)) return
    let i = nm.length
    let labels: Record<string, string> = {}
    if (line[i] === '{') {
      const parsed = parseLabels(line, i, problem)
      if (parsed === undefined) return
      labels = parsed.labels
      i = parsed.end
    }
    const fields = line.slice(i).trim().split(/\s+/)
    if (line[i] !== ' ' || fields.length < 1 || fields.length > 2 || fields[0] === '') {
      problem(`${nm}: expected " <value> [timestamp]"`)
      return
    }
    const [valueText, ts] = fields as [string, string | undefined]
    if (!FLOAT.test(valueText)) problem(`${nm}: value ${JSON.stringify(valueText)} is not a float`)
    if (ts !== undefined && !/^-?\d+$/.test(ts))
      problem(`${nm}: timestamp ${JSON.stringify(ts)} is not an integer`)
    let f = familyOf(nm, families)
    if (f === undefined) {
      // A sample without HELP/TYPE: an untyped family of its own (and no HELP: a problem).
      f = declare(nm, n)
      f.type = 'untyped'
    }
    if (current !== f) {
      if (current !== undefined) finished.add(current)
      if (finished.has(f)) problem(`${nm}: samples of ${f.name} are not contiguous`)
      current = f
    }
    f.firstSample ??= n
    const key = seriesKey(nm, labels)
    if (series.has(key)) problem(`duplicate series ${key}`)
    series.add(key)
    if (f.type === 'histogram' && nm.endsWith('_bucket')) {
      if (!('le' in labels)) problem(`${nm}: histogram bucket without "le"`)
      else if (!FLOAT.test(labels.le!)) problem(`${nm}: le=${labels.le} is not a float`)
      const { le: _le, ...rest } = labels
      const group = seriesKey(f.name, rest)
      f.infBucket.set(group, (f.infBucket.get(group) ?? false) || labels.le === '+Inf')
    } else if ('le' in labels) problem(`${nm}: "le" label is reserved for histogram buckets`)
    if ('quantile' in labels && !(f.type === 'summary' && nm === f.name))
      problem(`${nm}: "quantile" label is reserved for summaries`)
    const lower = valueText.toLowerCase()
    const value = /nan$/.test(lower)
      ? Number.NaN
      : /inf(inity)?$/.test(lower)
        ? lower.startsWith('-')
          ? -Infinity
          : Infinity
        : Number(valueText)
    samples.push({ name: nm, labels, value })
  })

  for (const f of families.values()) {
    if (!f.help) problems.push(`${f.name}: no HELP text`)
    if (f.type === undefined) problems.push(`${f.name}: HELP without TYPE`)
    for (const [group, inf] of f.infBucket)
      if (!inf) problems.push(`${group}: histogram has no +Inf bucket`)
  }
  return { problems, samples }
}

/** The value of the series `name` with exactly `labels` (undefined if absent). */
export function sampleValue(
  samples: readonly Sample[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const want = seriesKey(name, labels)
  return samples.find((s) => seriesKey(s.name, s.labels) === want)?.value
}
