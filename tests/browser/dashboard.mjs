// Drives the operator dashboard: node dashboard.mjs '{"url": …, "plugin":
// …, "screenshot": …}'. Prints `{"event": "ready", …}` once the page shows
// the plugin (the test starts its load then), waits while the live view
// turns it quarantined, takes the screenshot, clicks Enable and waits for
// it to show active again; then prints what it saw as one JSON line.
import { options, report, run } from './browser.mjs'

const STEP_MS = 60_000

await run(async ({ page, problems }) => {
  const opts = options()
  await page.goto(opts.url)
  const row = page.locator(`tr[data-plugin="${opts.plugin}"]`)
  await row.waitFor({ timeout: STEP_MS })
  report({ event: 'ready', state: await row.getAttribute('data-state') })
  const quarantined = page.locator(`tr[data-plugin="${opts.plugin}"][data-state="quarantined"]`)
  await quarantined.waitFor({ timeout: STEP_MS })
  const seen = await quarantined.evaluate((tr) => ({
    state: tr.dataset.state,
    reason: tr.querySelector('.reason')?.textContent ?? null,
    budget_stops: tr.querySelector('td.stops')?.textContent ?? null,
    invocations: tr.querySelector('td.outcomes')?.textContent ?? null,
    latency: tr.querySelector('td.latency')?.textContent ?? null,
    last_violation: tr.querySelector('td.violation')?.textContent ?? null,
  }))
  const status = await page.locator('#status').textContent()
  await page.screenshot({ path: opts.screenshot, fullPage: true })
  await row.locator('button.enable').click()
  await page.locator(`tr[data-plugin="${opts.plugin}"][data-state="active"]`).waitFor({ timeout: STEP_MS })
  const result = await page.locator('#action-result').textContent()
  report({ quarantined: seen, status, action_result: result, problems })
})
