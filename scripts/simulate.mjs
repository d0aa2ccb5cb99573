// Simulated traffic for the demo: visitors whose click probability depends on the arm of the
// `hero-headline` bandit they are shown, plus some bot traffic. Every few seconds it prints the
// share of traffic each arm got and the posteriors the edge reports, so you can watch Thompson
// sampling move traffic to the best arm.
//
//   node scripts/simulate.mjs [--url http://127.0.0.1:8787] [--seconds 60] [--bots 0.1]
import { randomBytes } from 'node:crypto';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
};
const url = arg('--url', 'http://127.0.0.1:8787');
const seconds = Number(arg('--seconds', 60));
const botShare = Number(arg('--bots', 0.1));
// What the simulated visitors do: the urgency headline works best.
const CLICK_RATE = { control: 0.04, benefit: 0.08, urgency: 0.2 };
const BROWSER = {
  'user-agent': 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
  accept: 'text/html',
  'accept-language': 'en-GB,en;q=0.9',
  'accept-encoding': 'identity',
};
const BOT = { 'user-agent': 'python-requests/2.32.3', accept: '*/*' };

let window = { control: 0, benefit: 0, urgency: 0 };
const totals = { visits: 0, clicks: 0, blocked: 0 };
const pendingClicks = new Set();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function visit() {
  if (Math.random() < botShare) {
    const response = await fetch(`${url}/`, { headers: BOT });
    await response.arrayBuffer();
    if (response.status === 403) totals.blocked++;
    return;
  }
  const headers = { ...BROWSER, cookie: `stellwerk_id=${randomBytes(16).toString('hex')}` };
  const response = await fetch(`${url}/`, { headers });
  const html = await response.text();
  const arm = /hero-headline=(\w+)/.exec(response.headers.get('x-stellwerk') ?? '')?.[1];
  const page = /window\.__stellwerk=(.*?);<\/script>/.exec(html);
  totals.visits++;
  if (!arm || !page) return;
  window[arm] = (window[arm] ?? 0) + 1;
  if (Math.random() < (CLICK_RATE[arm] ?? 0)) {
    const decision = JSON.parse(page[1]).experiments.find((e) => e.experiment === 'hero-headline');
    // People read before they click (the gate quarantines clicks within fraud.minClickSeconds of
    // the page); the visitor loop goes on meanwhile.
    const click = sleep(1_200 + Math.random() * 1_800)
      .then(() => fetch(`${url}/_stellwerk/feedback`, {
        method: 'POST',
        headers: { ...BROWSER, 'content-type': 'application/json' },
        body: JSON.stringify({ token: decision.token, type: 'click' }),
      }))
      .then((beacon) => { if (beacon.status === 202) totals.clicks++; })
      .catch((error) => console.error(`click failed: ${error.message}`))
      .finally(() => pendingClicks.delete(click));
    pendingClicks.add(click);
  }
}

async function report() {
  const health = await (await fetch(`${url}/_stellwerk/health`)).json();
  const arms = health.posteriors?.experiments?.['hero-headline']?.arms ?? {};
  const shown = Object.values(window).reduce((a, b) => a + b, 0) || 1;
  const rows = Object.keys(CLICK_RATE).map((arm) => {
    const s = arms[arm] ?? {};
    const share = ((100 * (window[arm] ?? 0)) / shown).toFixed(0).padStart(3);
    return `${arm.padEnd(8)} share ${share}%  exposures ${String(s.exposures ?? 0).padStart(5)}  clicks ${String(s.rewards ?? 0).padStart(4)}  P(best) ${s.pBest?.toFixed(2) ?? '  - '}`;
  });
  console.log(`\n${totals.visits} visits, ${totals.clicks} clicks, ${totals.blocked} bots blocked\n  ${rows.join('\n  ')}`);
  window = { control: 0, benefit: 0, urgency: 0 };
}

const deadline = Date.now() + seconds * 1000;
let nextReport = Date.now() + 5000;
const CONCURRENCY = 4;
await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
  while (Date.now() < deadline) {
    await visit().catch((error) => console.error(`visit failed: ${error.message}`));
    if (Date.now() >= nextReport) {
      nextReport = Date.now() + 5000;
      await report();
    }
  }
}));
await Promise.all(pendingClicks);
await report();
