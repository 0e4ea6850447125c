/**
 * Headless Chromium for browser tests: Debian's `chromium`, driven by playwright-core (no
 * browser is ever downloaded). A missing browser fails the test with the command to fix it.
 */
import { strict as assert } from 'node:assert'
import { existsSync, rmSync } from 'node:fs'
import { type BrowserContext, chromium } from 'playwright-core'
import { tempDir } from './helpers.js'

export const CHROMIUM = '/usr/bin/chromium'
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** Run `fn` with a fresh browser profile; the browser and profile are gone afterwards. */
export async function withChromium<T>(
  fn: (browser: BrowserContext) => Promise<T>,
  viewport = { width: 1280, height: 900 },
  /** More Chromium switches (`--ignore-certificate-errors-spki-list=…`). */
  extraArgs: readonly string[] = [],
): Promise<T> {
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium is not installed (${CHROMIUM}): install it with "apt-get install -y chromium" (.ci/run does this on a fresh machine)`,
  )
  const profile = tempDir('wirelog-chromium-')
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...ARGS, ...extraArgs],
    viewport,
  })
  try {
    return await fn(browser)
  } finally {
    await browser.close()
    rmSync(profile, { recursive: true, force: true })
  }
}
