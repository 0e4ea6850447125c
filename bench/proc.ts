/**
 * Processes: reading another process's CPU time, memory and limits from /proc, and spawning
 * the bench's children (pinned with taskset, with a raised file-descriptor limit) that talk
 * JSON lines over stdin/stdout.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { createInterface } from 'node:readline'

let clkTck: number | undefined

/** Clock ticks per second of /proc/<pid>/stat's utime/stime (`getconf CLK_TCK`, almost always 100). */
export function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      clkTck = 100
    }
  }
  return clkTck
}

let schedstat: boolean | undefined

/**
 * CPU seconds (user + system) of a whole process so far: all its threads (the event loop,
 * libuv's pool that writes the log, V8's GC helpers). From the scheduler's per-thread
 * nanosecond counters (/proc/<pid>/task/<tid>/schedstat) where the kernel has them, since
 * /proc/<pid>/stat counts in clock ticks (10 ms): too coarse for a few thousand messages.
 */
export function cpuSeconds(pid: number): number {
  if (schedstat !== false) {
    try {
      let ns = 0
      for (const tid of readdirSync(`/proc/${pid}/task`)) {
        try {
          ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
        } catch {
          // The thread ended between the listing and the read; its time is lost either way.
        }
      }
      if (ns > 0 || schedstat === true) {
        schedstat = true
        return ns / 1e9
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || schedstat === true) throw err
    }
    schedstat = false
  }
  return statCpuSeconds(pid)
}

/** Which clock cpuSeconds reads (for the report). */
export function cpuClock(): string {
  return schedstat === false
    ? `/proc/<pid>/stat (clock ticks, 1/${clockTicks()} s)`
    : '/proc/<pid>/task/*/schedstat (ns)'
}

/** User + system CPU seconds from /proc/<pid>/stat (clock-tick resolution). */
export function statCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may hold spaces; fields after the last ')' start at field 3.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const utime = Number(f[11])
  const stime = Number(f[12])
  return (utime + stime) / clockTicks()
}

/** Resident set size in bytes. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(m[1]) * 1024
}

/** Open-file limits of a process. */
export function fdLimit(pid: number | 'self'): { soft: number; hard: number } {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))
  const num = (s: string | undefined): number =>
    s === undefined || s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s)
  return { soft: num(m?.[1]), hard: num(m?.[2]) }
}

/** The CPUs this process may run on (Cpus_allowed_list), e.g. [0, 1]. */
export function allowedCpus(): number[] {
  try {
    const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))
    if (m) {
      const out: number[] = []
      for (const part of m[1]!.split(',')) {
        const [a, b] = part.split('-').map(Number)
        for (let c = a!; c <= (b ?? a!); c++) out.push(c)
      }
      if (out.length > 0) return out
    }
  } catch {}
  return cpus().map((_c, i) => i)
}

/** Whether `taskset` can be run. */
export function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** The ephemeral port range (connections per source address to one server are bounded by it). */
export function ephemeralPorts(): number {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number)
    return hi! - lo! + 1
  } catch {
    return 28_232
  }
}

/** Filesystem type holding `path` (the log's temp dir: tmpfs and ext4 cost differently). */
export function filesystemOf(path: string): string {
  try {
    return (
      execFileSync('df', ['--output=fstype', path], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .pop() ?? '?'
    )
  } catch {
    return '?'
  }
}

export interface SpawnOptions {
  /** Short name for messages (`server raw-ws`, `loadgen 1`). */
  name: string
  /** What node runs after its own flags: a script and its arguments. */
  args: string[]
  /** Pin to this CPU with taskset. */
  cpu?: number | undefined
  /** Raise the open-file limit to this (or as far as the hard limit allows). */
  nofile?: number | undefined
  nodeFlags?: string[]
  /** The environment (default: this process's). */
  env?: NodeJS.ProcessEnv
}

/** The args for a bench script that takes its config as one JSON argument. */
export function scriptArgs(script: string, config: unknown): string[] {
  return [script, JSON.stringify(config)]
}

/**
 * A child process that reports JSON lines. `next(type)` waits for the next unread report of
 * that type; a `{ type: 'error' }` report, an early exit or the timeout rejects it.
 */
export class Child<R extends { type: string }> {
  readonly name: string
  readonly proc: ChildProcess
  /** Exit code or signal, once exited. */
  exit: number | string | undefined
  readonly exited: Promise<number | string>
  #inbox: R[] = []
  #waiters = new Set<() => void>()
  #failure: Error | undefined
  #stderr = ''
  /** The first lines of stderr, whole. */
  #stderrLines: string[] = []

  constructor(opts: SpawnOptions) {
    this.name = opts.name
    const node = [process.execPath, ...(opts.nodeFlags ?? []), ...opts.args]
    const pinned = opts.cpu === undefined ? node : ['taskset', '-c', String(opts.cpu), ...node]
    // `ulimit -n` is a shell builtin; `exec` keeps the pid, so /proc/<pid> is node itself.
    const argv =
      opts.nofile === undefined
        ? pinned
        : [
            'bash',
            '-c',
            `ulimit -n ${opts.nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`,
            'bash',
            ...pinned,
          ]
    this.proc = spawn(argv[0]!, argv.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    })
    this.proc.stdin!.on('error', () => {})
    createInterface({ input: this.proc.stdout! }).on('line', (line) => this.#onLine(line))
    createInterface({ input: this.proc.stderr! }).on('line', (line) => {
      // Keep only the tail: enough to explain a crash.
      this.#stderr = `${this.#stderr}${line}\n`.slice(-4000)
      if (this.#stderrLines.length < 200) this.#stderrLines.push(line)
      for (const w of [...this.#waiters]) w()
    })
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': by then every stdout line has been read.
      this.proc.on('close', (code, signal) => {
        this.exit = code ?? signal ?? -1
        this.#fail(
          new Error(`${this.name} exited (${this.exit}) unexpectedly${this.#stderrNote()}`),
        )
        resolve(this.exit)
      })
    })
    live.add(this)
    this.exited.then(() => live.delete(this))
  }

  get pid(): number {
    return this.proc.pid!
  }

  get stderr(): string {
    return this.#stderr
  }

  /** The first 200 lines it wrote on stderr. */
  get stderrLines(): readonly string[] {
    return this.#stderrLines
  }

  /** The first stderr line matching `re` (waiting for it); an exit or the timeout rejects. */
  stderrMatch(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (const line of this.#stderrLines) {
          const m = re.exec(line)
          if (m) {
            done()
            resolve(m)
            return true
          }
        }
        if (this.#failure) {
          done()
          reject(this.#failure)
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        done()
        reject(
          new Error(
            `${this.name}: nothing like ${re} on stderr within ${timeoutMs} ms${this.#stderrNote()}`,
          ),
        )
      }, timeoutMs)
      const waiter = (): void => {
        check()
      }
      const done = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(waiter)
      }
      if (!check()) this.#waiters.add(waiter)
    })
  }

  /** Send a signal (if still running). */
  signal(sig: NodeJS.Signals): void {
    if (this.exit === undefined) this.proc.kill(sig)
  }

  send(cmd: object): void {
    if (this.exit === undefined) this.proc.stdin!.write(`${JSON.stringify(cmd)}\n`)
  }

  /** The next report of `type` (reports of other types stay queued). */
  next<T extends R['type']>(type: T, timeoutMs: number): Promise<Extract<R, { type: T }>> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const i = this.#inbox.findIndex((m) => m.type === type)
        if (i >= 0) {
          done()
          resolve(this.#inbox.splice(i, 1)[0] as Extract<R, { type: T }>)
          return true
        }
        if (this.#failure) {
          done()
          reject(this.#failure)
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        done()
        reject(
          new Error(
            `${this.name}: no '${type}' report within ${timeoutMs} ms${this.#stderrNote()}`,
          ),
        )
      }, timeoutMs)
      const waiter = (): void => {
        check()
      }
      const done = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(waiter)
      }
      if (!check()) this.#waiters.add(waiter)
    })
  }

  /** Ask it to stop by closing its stdin; kill it if it has not exited after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.exit !== undefined) return
    this.proc.stdin!.end()
    const t = setTimeout(() => this.kill(), graceMs)
    await this.exited
    clearTimeout(t)
  }

  kill(): void {
    if (this.exit === undefined) this.proc.kill('SIGKILL')
  }

  #onLine(line: string): void {
    let msg: R
    try {
      msg = JSON.parse(line) as R
    } catch {
      // Not ours (a stray console.log): show it rather than lose it.
      process.stderr.write(`[${this.name}] ${line}\n`)
      return
    }
    if (msg.type === 'error') {
      this.#fail(new Error(`${this.name}: ${(msg as unknown as { message: string }).message}`))
      return
    }
    this.#inbox.push(msg)
    for (const w of [...this.#waiters]) w()
  }

  #fail(err: Error): void {
    this.#failure ??= err
    for (const w of [...this.#waiters]) w()
  }

  #stderrNote(): string {
    const s = this.#stderr.trim()
    return s ? `; stderr: ${s.slice(-800)}` : ''
  }
}

const live = new Set<Child<{ type: string }>>()

/** Kill every child still running (on exit and on Ctrl-C: never leave a server behind). */
export function killAll(): void {
  for (const c of live) c.kill()
}
