/**
 * The dashboard in headless Chromium: a Node client's connect, message and disconnect show
 * up in the page's live tail, the filters and the pause button work, and the page's own
 * console is a client whose traffic appears too. Saves a screenshot: `docs/dashboard.png`
 * with WIRELOG_SCREENSHOT=1, else in the test's temp directory.
 */
import { strict as assert } from 'node:assert'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import type { Page } from 'playwright-core'
import { accept } from '../src/index.js'
import { withChromium } from './chromium.js'
import { connect, ROOT, startServer, type TestClient, tempDir } from './helpers.js'

/** Rows of the live tail must appear this fast (the feed sends every 100 ms). */
const TAIL_MS = 1000

const tailRow = (page: Page, event: string, client: string, text?: string) =>
  page.locator(`#tail tbody tr[data-event="${event}"][data-client="${client}"]`, {
    ...(text === undefined ? {} : { hasText: text }),
  })

async function idOf(t: Awaited<ReturnType<typeof startServer>>, known: Set<string>) {
  const c = [...t.server.clients].find((x) => !known.has(x.id))
  assert.ok(c, 'a new client is connected')
  known.add(c.id)
  return c.id
}

describe('dashboard in Chromium', () => {
  it('shows a client connecting, its message and its disconnect; filters, pause and the console work', async () => {
    // `?user=` names the user, as an authenticating admission hook would.
    const t = await startServer({
      admit: (req) => {
        const user = req.query.get('user')
        return accept({}, user ? { id: user, claims: {} } : undefined)
      },
    })
    const out = tempDir('wirelog-dashboard-')
    const shot =
      process.env.WIRELOG_SCREENSHOT === '1'
        ? join(ROOT, 'docs', 'dashboard.png')
        : join(out, 'dashboard.png')
    const clients: TestClient[] = []
    try {
      await withChromium(
        async (browser) => {
          const page = await browser.newPage()
          const problems: string[] = []
          page.on('pageerror', (e) => problems.push(e.message))
          page.on('console', (m) => {
            if (m.type() === 'error') problems.push(m.text())
          })
          await page.goto(`http://127.0.0.1:${t.port}/dashboard`)
          await page.locator('#feed-state[data-state="live"]').waitFor()
          const known = new Set<string>()

          // A Node client: connect, one message, close.
          const a = await connect(t.url, { headers: { 'user-agent': 'node-test-client' } })
          const idA = await idOf(t, known)
          await tailRow(page, 'client.connected', idA).waitFor({ timeout: TAIL_MS })
          a.ws.send('hello from node')
          await tailRow(page, 'message.received', idA, 'hello from node').waitFor({
            timeout: TAIL_MS,
          })
          await page.locator(`#clients tbody tr[data-client="${idA}"]`).waitFor()
          a.ws.close(1000, 'done')
          await a.closed
          await tailRow(page, 'client.disconnected', idA, 'code=1000').waitFor({
            timeout: TAIL_MS,
          })
          await page.locator('#close-codes tbody tr[data-code="1000"]').waitFor()
          await page.locator(`#clients tbody tr[data-client="${idA}"]`).waitFor({
            state: 'detached',
          })

          // Two clients talking: the client filter keeps only one's rows.
          const b = await connect(t.url)
          const idB = await idOf(t, known)
          const c = await connect(t.url)
          const idC = await idOf(t, known)
          clients.push(b, c)
          b.ws.send('from b')
          c.ws.send('from c')
          await tailRow(page, 'message.received', idB, 'from b').waitFor({ timeout: TAIL_MS })
          await tailRow(page, 'message.received', idC, 'from c').waitFor({ timeout: TAIL_MS })
          await page.fill('#f-client', idB)
          await page.locator(`#tail tbody tr[data-client="${idC}"]`).first().waitFor({
            state: 'detached',
          })
          const shownClients = await page
            .locator('#tail tbody tr')
            .evaluateAll((trs) =>
              trs.map((tr) => (tr as unknown as { dataset: any }).dataset.client),
            )
          assert.ok(shownClients.length >= 2, 'B has a connect and a message row')
          assert.deepEqual([...new Set(shownClients)], [idB])
          // The text filter narrows further; the event filter too.
          await page.fill('#f-text', 'from b')
          await page.locator('#tail tbody tr[data-event="client.connected"]').waitFor({
            state: 'detached',
          })
          assert.equal(await page.locator('#tail tbody tr').count(), 1)
          await page.click('#f-reset')
          await page.selectOption('#f-event', 'client.disconnected')
          await tailRow(page, 'client.disconnected', idA).waitFor()
          assert.equal(
            await page.locator('#tail tbody tr:not([data-event="client.disconnected"])').count(),
            0,
          )
          await page.click('#f-reset')

          // Pause: new rows are held, not shown; resume shows them.
          await page.click('#pause')
          await page.locator('#pause[aria-pressed="true"]').waitFor()
          c.ws.send('while paused')
          await page.locator('#tail-held', { hasText: /^[1-9]\d* new events held/ }).waitFor()
          assert.equal(await tailRow(page, 'message.received', idC, 'while paused').count(), 0)
          await page.click('#pause')
          await tailRow(page, 'message.received', idC, 'while paused').waitFor()

          // The page's own console is a client: its message appears in the tail.
          await page.click('#console-connect')
          await page.locator('#console-state[data-state="open"]').waitFor()
          const idPage = await idOf(t, known)
          // The page knows which client is its console, and its rows are marked.
          await page.locator(`#console-id[data-client="${idPage}"]`).waitFor({ timeout: TAIL_MS })
          await page.fill('#console-msg', 'typed in the dashboard')
          await page.press('#console-msg', 'Enter')
          await page
            .locator('#console-log .in', { hasText: 'Echo: typed in the dashboard' })
            .waitFor()
          await tailRow(page, 'message.received', idPage, 'typed in the dashboard').waitFor({
            timeout: TAIL_MS,
          })
          await page.locator(`#tail tbody tr.mine[data-client="${idPage}"]`).first().waitFor()
          await page.click('#f-mine')
          await page.locator(`#tail tbody tr:not([data-client="${idPage}"])`).first().waitFor({
            state: 'detached',
          })
          await page.click('#f-reset')
          await page.locator(`#clients tbody tr[data-client="${idPage}"]`).waitFor()

          if (process.env.WIRELOG_SCREENSHOT === '1')
            clients.push(...(await screenshotTraffic(t.url, page)))
          await page.locator('#log-health [data-key="lines"]').waitFor()
          await page.screenshot({ path: shot, fullPage: true })
          assert.deepEqual(problems, [])
        },
        { width: 1440, height: 1000 },
      )
    } finally {
      for (const c of clients) c.ws.terminate()
      await t.stop()
      if (process.env.WIRELOG_SCREENSHOT !== '1') rmSync(out, { recursive: true, force: true })
    }
  })

  it('on a public bind with --admin-token: the page opened with ?token= reads its feed with it', async () => {
    const token = 'browser-admin-token-0123456789'
    const t = await startServer({ host: '0.0.0.0', adminToken: token })
    try {
      await withChromium(async (browser) => {
        const page = await browser.newPage()
        const refused = await page.goto(`http://127.0.0.1:${t.port}/dashboard`)
        assert.equal(refused?.status(), 401)
        const ok = await page.goto(`http://127.0.0.1:${t.port}/dashboard?token=${token}`)
        assert.equal(ok?.status(), 200)
        await page.locator('#feed-state[data-state="live"]').waitFor()
        const c = await connect(`ws://127.0.0.1:${t.port}`)
        const id = [...t.server.clients][0]!.id
        await tailRow(page, 'client.connected', id).waitFor({ timeout: TAIL_MS })
        c.ws.close()
        await c.closed
      })
    } finally {
      await t.stop()
    }
  })
})

/** A few seconds of varied traffic, so the screenshot's charts and tables have something to show. */
async function screenshotTraffic(url: string, page: Page): Promise<TestClient[]> {
  const extra: TestClient[] = []
  const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']
  for (const u of users) extra.push(await connect(`${url}/chat?room=lobby&user=${u}`))
  for (let s = 0; s < 8; s++) {
    const n = 20 + Math.round(30 * Math.sin(s))
    for (const c of extra) for (let i = 0; i < n; i++) c.ws.send(`tick ${s}.${i}`)
    if (s === 4) extra.shift()?.ws.close(1001, 'going away')
    if (s === 6) extra.shift()?.ws.terminate()
    await page.waitForTimeout(1000)
  }
  return extra
}
