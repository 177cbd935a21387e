// Drives the upload page: node upload-page.mjs '{"url": …, "apiKey": …,
// "files": [{"path": …, "name": …}], "screenshot": …, "announce": {"name":
// …, "atBytes": …}}'. Picks the files at once in the page (Uppy, uploading
// each over tus), waits until each card settles (stored with its derived
// images loaded, or failed), and prints what each card shows as one JSON
// line. With `announce`, uploads are throttled (512 KiB/s) and
// `{"event": "sent", …}` is printed once that file has sent `atBytes` (the
// test cuts the connection then).
import { options, report, run } from './browser.mjs'

// Bounds each wait on the page (a thumbnail takes well under a second).
const STEP_MS = 60_000

await run(async ({ page, problems }) => {
  const opts = options()
  await page.goto(opts.url)
  if (opts.apiKey) {
    await page.click('details.key summary')
    await page.fill('#api-key', opts.apiKey)
    await page.press('#api-key', 'Tab')
  }
  if (opts.announce) {
    const cdp = await page.context().newCDPSession(page)
    await cdp.send('Network.enable')
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 512 * 1024,
    })
  }
  await page.locator('input.uppy-Dashboard-input[type=file]').first()
    .setInputFiles(opts.files.map((file) => file.path))
  if (opts.announce) {
    const { name, atBytes } = opts.announce
    await page.waitForFunction(
      ([name, atBytes]) => Number(document.querySelector(`article.card[data-file="${name}"]`)?.dataset.sent ?? 0) >= atBytes,
      [name, atBytes],
      { timeout: STEP_MS },
    )
    const sent = await page.locator(`article.card[data-file="${name}"]`).getAttribute('data-sent')
    report({ event: 'sent', sent: Number(sent) })
  }
  const cards = []
  for (const file of opts.files) {
    const card = page.locator(`article.card[data-file="${file.name}"]`)
    // Settled: a stored upload's record is final and its images loaded,
    // or the upload failed.
    await card.and(page.locator('.settled, .failed')).waitFor({ timeout: STEP_MS })
    await page.waitForFunction(
      (name) => [...document.querySelectorAll(`article.card[data-file="${name}"] img.thumbnail`)]
        .every((img) => img.classList.contains('loaded')),
      file.name,
      { timeout: STEP_MS },
    )
    cards.push(await card.evaluate((node) => ({
      state: node.classList.contains('failed') ? 'failed' : 'stored',
      id: node.dataset.id ?? null,
      content_type: node.querySelector('.content-type')?.textContent ?? null,
      metadata: Object.fromEntries([...node.querySelectorAll('table.metadata tr')]
        .map((tr) => [tr.querySelector('th').textContent, tr.querySelector('td').textContent])),
      derived: [...node.querySelectorAll('figure')].map((figure) => {
        const img = figure.querySelector('img')
        return { name: figure.dataset.name, width: img?.naturalWidth ?? 0, height: img?.naturalHeight ?? 0 }
      }),
      skipped: [...node.querySelectorAll('.skipped li')].map((li) => li.textContent),
      rejection: node.querySelector('.rejected')?.textContent ?? null,
      error: node.querySelector('.error')?.textContent ?? null,
    })))
  }
  await page.screenshot({ path: opts.screenshot, fullPage: true })
  report({ cards, problems })
})
