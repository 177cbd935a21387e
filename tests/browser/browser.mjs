// Shared by the page drivers: Debian's Chromium, headless, through
// playwright-core; what the page logged that a test should see.
import { chromium } from 'playwright-core'

/** Debian's chromium unless AIRLOCK_TEST_CHROMIUM names another. */
export const CHROMIUM = process.env.AIRLOCK_TEST_CHROMIUM || '/usr/bin/chromium'

/** A headless browser and one page, with its console errors collected. */
export async function open() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root in a container: no user namespace sandbox, small /dev/shm.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  })
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  const problems = []
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`)
  })
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  return { browser, page, problems }
}

/** The options given as the one JSON argument. */
export function options() {
  return JSON.parse(process.argv[2] ?? '{}')
}

/** Prints one JSON line (what the test reads). */
export function report(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

/** Runs `main`; on failure prints `{"error": …}` with a screenshot. */
export async function run(main) {
  let session
  try {
    session = await open()
    await main(session)
  } catch (error) {
    if (session?.page) {
      const shot = options().screenshot?.replace(/\.png$/, '-failure.png')
      if (shot) await session.page.screenshot({ path: shot, fullPage: true }).catch(() => {})
    }
    report({ error: String(error?.stack ?? error), problems: session?.problems ?? [] })
    process.exitCode = 1
  } finally {
    await session?.browser.close()
  }
}
