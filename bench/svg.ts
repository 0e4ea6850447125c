/**
 * The plot the bench writes: server CPU per message against message rate, one line per
 * server, as a hand-written SVG (no dependency). The rate axis is logarithmic, and so is the
 * CPU axis when the figures span more than a factor of 15 (a lone message at 1,000 msg/s costs
 * many times what one of a batch does at saturation); the last point of each line is the
 * server's saturation (closed loop), drawn hollow.
 */

export interface PlotPoint {
  /** Messages per second actually echoed. */
  x: number
  /** Server CPU µs per message. */
  y: number
  saturation: boolean
}

export interface PlotSeries {
  label: string
  points: PlotPoint[]
}

const W = 820
const H = 480
const M = { left: 64, right: 200, top: 56, bottom: 62 }
const COLOURS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#9467bd',
  '#ff7f0e',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#7f7f7f',
  '#bcbd22',
]

function esc(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
}

/** A round step for about `n` ticks over [0, max]. */
function niceStep(max: number, n: number): number {
  const raw = max / n
  const p = 10 ** Math.floor(Math.log10(raw))
  const f = raw / p
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p
}

/** The nearest 1, 2 or 5 × 10^k below (or above) `v`. */
function tick125(v: number, dir: 'down' | 'up'): number {
  const e = Math.floor(Math.log10(v))
  const c = [1, 2, 5, 10].map((m) => m * 10 ** e)
  return dir === 'down' ? c.filter((t) => t <= v).pop()! : c.find((t) => t >= v)!
}

function rateLabel(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`
  return String(v)
}

const f1 = (v: number): string => v.toFixed(1)

export function cpuPlot(series: PlotSeries[], title: string, subtitle: string): string {
  const pts = series.flatMap((s) => s.points).filter((p) => p.x > 0 && Number.isFinite(p.y))
  const minX = Math.min(...pts.map((p) => p.x), 1000)
  const maxX = Math.max(...pts.map((p) => p.x), 10_000)
  const lo = Math.log10(minX / 1.25)
  const hi = Math.log10(maxX * 1.25)
  const maxY = Math.max(...pts.map((p) => p.y), 1)
  const minY = Math.max(Math.min(...pts.map((p) => p.y), maxY), 0.01)
  const logY = maxY / minY > 15
  const yStep = niceStep(maxY * 1.08, 6)
  const yTop = Math.ceil((maxY * 1.08) / yStep) * yStep
  // From the 1-2-5 tick below the lowest figure to the one above the highest.
  const yLo = Math.log10(tick125(minY / 1.05, 'down'))
  const yHi = Math.log10(tick125(maxY * 1.05, 'up'))
  const pw = W - M.left - M.right
  const ph = H - M.top - M.bottom
  const sx = (x: number): number => M.left + ((Math.log10(x) - lo) / (hi - lo)) * pw
  const sy = (y: number): number =>
    logY ? M.top + ph - ((Math.log10(y) - yLo) / (yHi - yLo)) * ph : M.top + ph - (y / yTop) * ph
  const out: string[] = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${M.left}" y="22" font-size="15" font-weight="600" fill="#111">${esc(title)}</text>`,
    `<text x="${M.left}" y="40" fill="#555">${esc(subtitle)}</text>`,
  )
  // Grid and y axis.
  const yTicks: number[] = []
  if (logY) {
    for (let e = Math.floor(yLo); e <= Math.ceil(yHi); e++)
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e
        if (Math.log10(v) >= yLo && Math.log10(v) <= yHi) yTicks.push(v)
      }
  } else for (let y = 0; y <= yTop + 1e-9; y += yStep) yTicks.push(y)
  for (const y of yTicks) {
    const py = f1(sy(y))
    out.push(
      `<line x1="${M.left}" y1="${py}" x2="${M.left + pw}" y2="${py}" stroke="#e5e5e5"/>`,
      `<text x="${M.left - 8}" y="${py}" text-anchor="end" dominant-baseline="middle" fill="#333">${+y.toFixed(2)}</text>`,
    )
  }
  // Rate ticks at 1, 2, 5 × 10^k.
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e
      const l = Math.log10(v)
      if (l < lo || l > hi) continue
      const px = f1(sx(v))
      out.push(
        `<line x1="${px}" y1="${M.top}" x2="${px}" y2="${M.top + ph}" stroke="${m === 1 ? '#d0d0d0' : '#eeeeee'}"/>`,
        `<text x="${px}" y="${M.top + ph + 18}" text-anchor="middle" fill="#333">${rateLabel(v)}</text>`,
      )
    }
  }
  out.push(
    `<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
    `<text x="${M.left + pw / 2}" y="${H - 18}" text-anchor="middle" fill="#111">messages per second echoed (log scale)</text>`,
    `<text transform="translate(18 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#111">server CPU µs per message${logY ? ' (log scale)' : ''}</text>`,
  )
  // One line per server.
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length]!
    const ps = s.points.filter((p) => p.x > 0 && Number.isFinite(p.y)).sort((a, b) => a.x - b.x)
    if (ps.length > 1) {
      const d = ps.map((p, k) => `${k === 0 ? 'M' : 'L'}${f1(sx(p.x))} ${f1(sy(p.y))}`).join(' ')
      out.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"/>`)
    }
    for (const p of ps) {
      const cx = f1(sx(p.x))
      const cy = f1(sy(p.y))
      out.push(
        p.saturation
          ? `<rect x="${f1(sx(p.x) - 4.5)}" y="${f1(sy(p.y) - 4.5)}" width="9" height="9" fill="#fff" stroke="${colour}" stroke-width="2"><title>${esc(`${s.label}: saturation, ${Math.round(p.x)} msg/s, ${p.y.toFixed(2)} µs/msg`)}</title></rect>`
          : `<circle cx="${cx}" cy="${cy}" r="3.5" fill="${colour}"><title>${esc(`${s.label}: ${Math.round(p.x)} msg/s, ${p.y.toFixed(2)} µs/msg`)}</title></circle>`,
      )
    }
    // Legend.
    const ly = M.top + 8 + i * 22
    const lx = M.left + pw + 16
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`,
      `<circle cx="${lx + 11}" cy="${ly}" r="3.5" fill="${colour}"/>`,
      `<text x="${lx + 30}" y="${ly}" dominant-baseline="middle" fill="#111">${esc(s.label)}</text>`,
    )
  })
  const ny = M.top + 8 + series.length * 22 + 10
  const nx = M.left + pw + 16
  out.push(
    `<rect x="${nx + 6.5}" y="${ny - 4.5}" width="9" height="9" fill="#fff" stroke="#555" stroke-width="2"/>`,
    `<text x="${nx + 30}" y="${ny}" dominant-baseline="middle" fill="#555">saturation</text>`,
    `<text x="${nx}" y="${ny + 20}" fill="#555">(closed loop; other</text>`,
    `<text x="${nx}" y="${ny + 36}" fill="#555">points: open loop)</text>`,
    '</svg>',
  )
  return `${out.join('\n')}\n`
}
