/**
 * Progress on stderr (stdout is the report alone), for the benchmarks, the soak and
 * `wirelog logs summary`. On a terminal: one live status line
 * (what runs now, which round, an ETA) redrawn in place, with finished steps printed above
 * it. Otherwise (CI, a pipe, a file): plain lines only, no escape codes, no redraws.
 */

export class Progress {
  readonly tty: boolean
  #status = ''
  #timer: NodeJS.Timeout | undefined
  #render: (() => string) | undefined

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.#stream = stream
    this.tty = stream.isTTY === true && process.env.TERM !== 'dumb'
  }

  readonly #stream: NodeJS.WriteStream

  /** A finished step: a line of its own (above the status line on a terminal). */
  line(text: string): void {
    if (this.tty) this.#stream.write(`\r\x1b[2K${text}\n${this.#fit(this.#status)}`)
    else this.#stream.write(`${text}\n`)
  }

  /**
   * What is running now. On a terminal it is redrawn every second from `render` (so an ETA
   * counts down); elsewhere nothing is printed.
   */
  status(render: () => string): void {
    if (!this.tty) return
    this.#render = render
    this.#draw()
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#draw(), 1000)
      this.#timer.unref()
    }
  }

  /** Clear the status line and stop redrawing it. */
  done(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
    this.#render = undefined
    if (this.tty && this.#status) this.#stream.write('\r\x1b[2K')
    this.#status = ''
  }

  #draw(): void {
    if (!this.#render) return
    this.#status = this.#render()
    this.#stream.write(`\r\x1b[2K${this.#fit(this.#status)}`)
  }

  #fit(s: string): string {
    const cols = this.#stream.columns || 100
    return s.length >= cols ? `${s.slice(0, cols - 2)}…` : s
  }
}

/** "1 min 05 s", "42 s". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s} s`
  const m = Math.floor(s / 60)
  return `${m} min ${String(s % 60).padStart(2, '0')} s`
}
