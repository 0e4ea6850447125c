/**
 * How fast `wirelog logs` can get the lines of a file: its own chunked splitter against
 * `readline`, and the parser on top, alternating runs (CPU time of this process):
 *
 *   node .build/bench/log-read.js <file> [rounds]
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { eachLine } from '../src/tools/log-files.js'
import { parseLine } from '../src/tools/log-record.js'

const file = process.argv[2]
if (!file) {
  process.stderr.write('usage: log-read <file> [rounds]\n')
  process.exit(2)
}
const rounds = Number(process.argv[3] ?? 3)
const size = (await stat(file)).size

async function viaReadline(): Promise<number> {
  let n = 0
  const rl = createInterface({
    input: createReadStream(file!),
    crlfDelay: Number.POSITIVE_INFINITY,
  })
  for await (const _ of rl) n++
  return n
}

async function viaSplitter(): Promise<number> {
  let n = 0
  await eachLine(file!, () => {
    n++
  })
  return n
}

async function parsed(): Promise<number> {
  let n = 0
  await eachLine(file!, (l) => {
    if (parseLine(l) !== undefined) n++
  })
  return n
}

const runs: Record<string, number[]> = { readline: [], splitter: [], 'splitter+parse': [] }
let lines = 0
for (let r = 0; r < rounds; r++) {
  for (const [name, fn] of [
    ['readline', viaReadline],
    ['splitter', viaSplitter],
    ['splitter+parse', parsed],
  ] as const) {
    const c0 = process.cpuUsage()
    lines = await fn()
    const c = process.cpuUsage(c0)
    runs[name]!.push((c.user + c.system) / 1e6)
  }
}
for (const [name, t] of Object.entries(runs)) {
  const med = t.sort((a, b) => a - b)[Math.floor(t.length / 2)]!
  console.log(
    `${name.padEnd(15)} ${med.toFixed(2)} s CPU  ${Math.round(lines / med).toLocaleString('en-US')} lines/s  ${(size / 1e6 / med).toFixed(0)} MB/s`,
  )
}
