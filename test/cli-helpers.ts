/** Helpers for the CLI tests. */

/** `--help`'s option rows: flag → placeholder and the description with its lines joined. */
export function helpBlocks(help: string): Map<string, { arg: string; text: string }> {
  const out = new Map<string, { arg: string; text: string }>()
  let cur: { arg: string; text: string } | undefined
  for (const line of help.split('\n')) {
    const m = /^ {2}(--[a-z-]+)(?: ([<[]\S+))?(?: {2,}(.*))?$/.exec(line)
    if (m) {
      cur = { arg: m[2] ?? '', text: m[3] ?? '' }
      out.set(m[1]!, cur)
    } else if (cur && /^ {6,}\S/.test(line)) cur.text = `${cur.text} ${line.trim()}`.trim()
    else cur = undefined
  }
  return out
}
