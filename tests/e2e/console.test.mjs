// The marketers' console in headless Chromium (Debian's chromium driven by playwright-core)
// against the Worker in wrangler dev: log in, toggle a flag and see the demo page change on the
// next request, pause an experiment, read an arm's chart. Saves a screenshot of the experiment
// page to tests/artifacts/console-experiment.png.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import { startStack, waitFor } from './stack.mjs';
import { demoStore } from '../../demo/store.mjs';
import { ROOT } from '../../scripts/publish.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts');
// The demo snapshot blocks HeadlessChrome: the visitor's tab presents itself as a desktop browser.
const VISITOR_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36';
const BROWSER = { 'user-agent': VISITOR_UA, accept: 'text/html', 'accept-language': 'en-US,en;q=0.9' };
const BANNER = 'Winter sale: 20% off everything';

describe('console in headless Chromium', { timeout: 300_000 }, () => {
  let stack;
  let browser;
  let console_;
  const health = async () => (await stack.fetch('/_stellwerk/health')).json();

  /** Visits the home page as `count` new visitors; those on `clicker` arms click a moment later. */
  async function traffic(count, clickers) {
    const clicks = [];
    for (let i = 0; i < count; i++) {
      const unit = randomBytes(16).toString('hex');
      const html = await (await stack.fetch('/', { headers: { ...BROWSER, cookie: `stellwerk_id=${unit}` } })).text();
      const injected = html.match(/window\.__stellwerk=(.*?);<\/script>/);
      const hero = injected && JSON.parse(injected[1]).experiments.find((e) => e.experiment === 'hero-headline');
      if (hero && clickers.includes(hero.arm)) clicks.push(hero.token);
    }
    // People read before they click: the gate quarantines clicks faster than minClickSeconds (1 s).
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    for (const token of clicks) assert.equal((await click(token)).status, 202);
  }
  const click = (token) => stack.fetch('/_stellwerk/feedback', {
    method: 'POST', headers: { ...BROWSER, 'content-type': 'application/json' }, body: JSON.stringify({ token, type: 'click' }),
  });

  const exposures = async () => Object.values((await health()).posteriors.experiments['hero-headline']?.arms ?? {})
    .reduce((sum, arm) => sum + arm.exposures, 0);

  before(async () => {
    stack = await startStack({ r2: demoStore(), vars: { SNAPSHOT_TTL_MS: '200' } });
    // Two rounds of visitors, each folded in by the consumer, so the history has two points.
    await traffic(30, ['urgency']);
    await waitFor(async () => (await exposures()) >= 30, { what: 'the first round in the posteriors' });
    await traffic(30, ['urgency', 'benefit']);
    // And one click at machine speed, which lands in quarantine, not in the bandit.
    const html = await (await stack.fetch('/', { headers: { ...BROWSER, cookie: `stellwerk_id=${randomBytes(16).toString('hex')}` } })).text();
    const hero = JSON.parse(html.match(/window\.__stellwerk=(.*?);<\/script>/)[1]).experiments.find((e) => e.experiment === 'hero-headline');
    assert.equal((await click(hero.token)).status, 202);
    await waitFor(async () => (await exposures()) >= 61
      && (await health()).posteriors.experiments['hero-headline'].quarantined === 1, { what: 'the second round in the posteriors' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    console_ = await browser.newPage({ viewport: { width: 1100, height: 1300 } });
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  test('log in', async () => {
    const response = await console_.goto(`${stack.url}/_stellwerk/admin/`);
    assert.equal(response.status(), 401);
    assert.equal(await console_.locator('table').count(), 0, 'nothing but the login form');
    await console_.fill('input[name=name]', 'Marketing Maria');
    await console_.fill('input[name=token]', 'not-the-token');
    await console_.click('button[type=submit]');
    await console_.waitForSelector('.error');
    await console_.fill('input[name=name]', 'Marketing Maria');
    await console_.fill('input[name=token]', stack.adminToken);
    await console_.click('button[type=submit]');
    await console_.waitForSelector('tr[data-flag="holiday-banner"]');
    await console_.waitForSelector('#who:has-text("session:Marketing Maria")');
    assert.equal(await console_.textContent('#version'), 'demo-1');
  });

  test('toggle a flag and see the demo page change on the next request', async () => {
    const visitor = await browser.newPage({ userAgent: VISITOR_UA });
    // The banner is a 50/50 rollout by visitor: find a visitor who sees it.
    let unit;
    await waitFor(async () => {
      unit = randomBytes(16).toString('hex');
      await visitor.context().addCookies([{ name: 'stellwerk_id', value: unit, url: stack.url }]);
      await visitor.goto(`${stack.url}/`);
      return (await visitor.content()).includes(BANNER);
    }, { what: 'a visitor in the banner rollout', intervalMs: 0 });

    const toggle = console_.locator('input[data-flag-toggle="holiday-banner"]');
    assert.equal(await toggle.isChecked(), true);
    await toggle.uncheck();
    await console_.waitForSelector('#notice:has-text("Saved: flag holiday-banner: state DISABLED")');
    await visitor.reload();
    assert.ok(!(await visitor.content()).includes(BANNER), 'the banner is gone on the next request');
    assert.equal(await console_.textContent('#version'), 'demo-1.r1');

    await console_.locator('input[data-flag-toggle="holiday-banner"]').check();
    await console_.waitForSelector('#notice:has-text("state ENABLED")');
    await visitor.reload();
    assert.ok((await visitor.content()).includes(BANNER), 'and back on');
    await visitor.close();
  });

  test('pause an experiment', async () => {
    const row = console_.locator('tr[data-experiment="hero-headline"]');
    await row.locator('button[data-action="pause"]').click();
    await console_.waitForSelector('tr[data-experiment="hero-headline"] [data-status="paused"]');
    const page = await stack.fetch('/', { headers: BROWSER });
    assert.doesNotMatch(page.headers.get('x-stellwerk'), /hero-headline/);
    await console_.locator('tr[data-experiment="hero-headline"] button[data-action="start"]').click();
    await console_.waitForSelector('tr[data-experiment="hero-headline"] [data-status="running"]');
  });

  test("read an arm's chart on the experiment page", async () => {
    await console_.click('a[href="#/experiments/hero-headline"]');
    const armKeys = ['control', 'benefit', 'urgency'];
    // The page and the health document agree once the consumer has folded in every event.
    await waitFor(async () => {
      await console_.reload();
      await console_.waitForSelector('#chart-p-best .u-over');
      const posterior = (await health()).posteriors.experiments['hero-headline'];
      for (const arm of armKeys) {
        const cells = await console_.locator(`#arms tr[data-arm="${arm}"] td`).allTextContents();
        if (Number(cells[1]) !== (posterior.arms[arm]?.exposures ?? 0)) return false;
        if (Number(cells[2]) !== (posterior.arms[arm]?.rewards ?? 0)) return false;
      }
      return true;
    }, { what: 'the experiment page to show the posteriors', intervalMs: 1000 });
    assert.match(await console_.textContent('#quarantined'), /Fraud-quarantined feedback \(not counted above\): 1$/);
    const rewards = await console_.locator('#arms tr td:nth-child(3)').allTextContents();
    assert.ok(rewards.some((r) => Number(r) > 0), `the paced clicks reached the bandit: ${rewards}`);

    // Hover over each arm's bar in the P(best) chart: the legend names the arm and its value,
    // which must be the table's P(best).
    const over = await console_.locator('#chart-p-best .u-over').boundingBox();
    for (const [i, arm] of armKeys.entries()) {
      await console_.mouse.move(over.x + over.width * ((i + 0.5) / armKeys.length), over.y + over.height / 2);
      const values = await console_.locator('#chart-p-best .u-legend .u-value').allTextContents();
      const pBest = await console_.locator(`#arms tr[data-arm="${arm}"] td`).nth(5).textContent();
      assert.deepEqual(values, [arm, pBest], `the chart's ${arm} bar`);
    }
    // The traffic-share chart has a line per arm over at least one interval.
    const shareLegend = await console_.locator('#chart-share .u-legend .u-series').allTextContents();
    for (const arm of armKeys) assert.ok(shareLegend.some((s) => s.includes(arm)), `${arm} in the traffic share chart`);
    await console_.mouse.move(0, 0);
    mkdirSync(ARTIFACTS, { recursive: true });
    await console_.screenshot({ path: path.join(ARTIFACTS, 'console-experiment.png'), fullPage: true });
  });
});
