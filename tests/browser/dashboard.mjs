#!/usr/bin/env node
// Headless-Chromium checks of the emoflow live dashboard (GET /) against a running service.
//
//   node tests/browser/dashboard.mjs --url http://127.0.0.1:8080 --out DIR
//        [--token TOKEN] [--chromium /usr/bin/chromium] [--timeout 85]
//
// Prints one line per check ("ok ..." or "FAIL ...: why") and exits 0 only if every check
// passed. Works on an empty service and under a background load: numbers are compared with
// /stats at the same `as_of`, never at "about the same time".
import { chromium } from 'playwright-core';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    out: { type: 'string' },
    token: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium' },
    timeout: { type: 'string', default: '85' },
  },
});
if (!args.url || !args.out) {
  console.error('usage: node dashboard.mjs --url http://HOST:PORT --out DIR [--token T] [--chromium PATH]');
  process.exit(2);
}
const base = new URL(args.url);
const run = Date.now().toString(36); // makes this run's users, filters and emojis its own
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// The whole run is bounded: a hung browser or service must fail, not hang the caller.
const deadline = setTimeout(() => {
  console.log(`FAIL the run took longer than ${args.timeout} s`);
  process.exit(1);
}, Number(args.timeout) * 1000);

// ------------------------------------------------------------------ helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class CheckFailed extends Error {}
function expect(cond, why) {
  if (!cond) throw new CheckFailed(why);
}

/** Polls `fn` until it returns a truthy value; fails with `why` (and the last value) after `ms`. */
async function until(fn, ms, why) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(100);
  }
  throw new CheckFailed(`${why} (waited ${ms / 1000} s; last saw ${JSON.stringify(last)})`);
}

async function apiGet(p) {
  const res = await fetch(new URL(p, base));
  const body = await res.json();
  if (!res.ok) throw new CheckFailed(`GET ${p} answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

async function apiDelete(p) {
  const headers = args.token ? { Authorization: `Bearer ${args.token}` } : {};
  await fetch(new URL(p, base), { method: 'DELETE', headers }).catch(() => null);
}

async function postEvents(events) {
  const headers = { 'Content-Type': 'application/x-ndjson' };
  if (args.token) headers.Authorization = `Bearer ${args.token}`;
  const body = events.map((e) => JSON.stringify(e)).join('\n') + '\n';
  const res = await fetch(new URL('/events', base), { method: 'POST', headers, body });
  const answer = await res.json().catch(() => null);
  expect(res.status === 202 && answer && answer.accepted === events.length,
    `POST /events of ${events.length} answered ${res.status} ${JSON.stringify(answer)}`);
}

const digits = (text) => Number(String(text).replace(/[^0-9]/g, ''));

const results = [];
async function check(name, fn) {
  const started = Date.now();
  try {
    const note = await fn();
    console.log(`ok   ${name}${note ? `: ${note}` : ''} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    results.push(true);
  } catch (e) {
    const why = e instanceof CheckFailed ? e.message : (e && e.stack) || String(e);
    console.log(`FAIL ${name}: ${why}`);
    results.push(false);
  }
}

// ------------------------------------------------------------------ what the page shows

/** The page's total, its as_of and the lifetime bars, read in one go (one message's values). */
function readShown(page) {
  return page.evaluate(() => {
    const t = document.getElementById('total');
    const c = document.getElementById('counts');
    const bars = [...c.querySelectorAll('li[data-count-emoji]')].map((li) => ({
      emoji: li.dataset.countEmoji,
      count: Number(li.dataset.count),
      text: li.querySelector('.num').textContent,
    }));
    return {
      total: t.dataset.value === '' ? null : Number(t.dataset.value),
      text: t.textContent,
      asOf: Number(t.dataset.asOf || 0),
      countsAsOf: Number(c.dataset.asOf || 0),
      window: c.dataset.window,
      bars,
    };
  });
}

/** The problems seen, each once, with how often. */
function listProblems(problems) {
  const seen = new Map();
  for (const p of problems) seen.set(p, (seen.get(p) || 0) + 1);
  return [...seen].map(([p, n]) => (n > 1 ? `${p} (×${n})` : p)).join('; ');
}

/** Watches the page for problems for the whole run. */
function watchProblems(context, page, problems) {
  context.on('request', (req) => {
    const u = new URL(req.url());
    if (u.protocol === 'data:' || u.protocol === 'blob:') return;
    if (u.origin !== base.origin) problems.push(`request to another origin: ${req.url()}`);
  });
  page.on('console', (msg) => {
    if (msg.type() !== 'error' && msg.type() !== 'warning') return;
    const where = msg.location() && msg.location().url;
    problems.push(`console ${msg.type()}: ${msg.text()}${where ? ` (${where})` : ''}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
}

/** The page's total and bars against /stats of the same as_of: equal, and the bars the largest. */
function compareAtSameAsOf(shown, same) {
  expect(same.total === shown.total, `as of ${shown.asOf}: /stats total ${same.total}, page ${shown.total}`);
  expect(shown.total > 0 && shown.bars.length > 0, `nothing to compare: total ${shown.total}, ${shown.bars.length} bars`);
  for (const b of shown.bars) {
    expect(same.counts[b.emoji] === b.count, `as of ${shown.asOf}: ${b.emoji} is ${same.counts[b.emoji]} in /stats, ${b.count} on the page`);
    expect(digits(b.text) === b.count, `the ${b.emoji} bar reads "${b.text}" but holds ${b.count}`);
  }
  const smallest = Math.min(...shown.bars.map((b) => b.count));
  const shownSet = new Set(shown.bars.map((b) => b.emoji));
  const bigger = Object.entries(same.counts).filter(([e, n]) => !shownSet.has(e) && n > smallest);
  expect(bigger.length === 0, `the page leaves out ${JSON.stringify(bigger)}, larger than a bar it shows`);
  expect(shown.bars.length === Math.min(12, Object.keys(same.counts).length),
    `${shown.bars.length} bars for ${Object.keys(same.counts).length} emojis`);
}

// ------------------------------------------------------------------ the checks

async function main() {
  await mkdir(args.out, { recursive: true });
  const browser = await chromium.launch({ executablePath: args.chromium, args: CHROMIUM_ARGS });
  const problems = [];
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  watchProblems(context, page, problems);
  const assets = new Map();
  page.on('response', (r) => assets.set(new URL(r.url()).pathname, r.status()));

  await check('1 page loads with no console error, page error or outside request', async () => {
    const res = await page.goto(base.href, { waitUntil: 'load' });
    expect(res && res.status() === 200, `GET / answered ${res && res.status()}`);
    for (const a of ['/assets/dashboard.css', '/assets/dashboard.js']) {
      expect(assets.get(a) === 200, `${a} answered ${assets.get(a)}`);
    }
    await until(() => page.evaluate(() => document.getElementById('total').dataset.asOf), 10000,
      'the page never showed a message of /stream (#total[data-as-of])');
    await until(() => page.evaluate(() => document.getElementById('conn').dataset.state === 'live'), 10000,
      'the connection indicator never said live');
    await sleep(1000); // let late errors (a failed asset, a bad render) surface
    expect(problems.length === 0, listProblems(problems));
    return `styles and script served, stream live`;
  });

  let seedUser = `bt-${run}-seed`;
  await check('2 the total and lifetime counts shown equal /stats at the same as_of', async () => {
    // An empty service has nothing to compare: give it some events first.
    if ((await apiGet('/stats')).total === 0) {
      await postEvents(Array.from({ length: 25 }, (_, i) => ({ user_id: seedUser, emoji: i % 2 ? '👍' : '🔥' })));
    }
    await until(async () => (await readShown(page)).total > 0, 10000, 'the page never showed a total above 0');
    // Exact: poll /stats fast and keep every as_of seen, until one is the page's.
    const statsAt = new Map();
    let exact = 0;
    let end = Date.now() + 15000;
    while (Date.now() < end && exact < 3) {
      const stats = await apiGet('/stats');
      statsAt.set(stats.as_of, stats);
      const shown = await readShown(page);
      expect(shown.window === 'lifetime', `the page shows window ${shown.window}, not lifetime`);
      expect(digits(shown.text) === shown.total, `#total reads "${shown.text}" but holds ${shown.total}`);
      expect(shown.countsAsOf === shown.asOf, `the bars are as of ${shown.countsAsOf}, the total of ${shown.asOf}`);
      const same = statsAt.get(shown.asOf);
      if (!same) continue;
      compareAtSameAsOf(shown, same);
      exact += 1;
      statsAt.clear();
      await sleep(300); // the next match should be of another message
    }
    expect(exact > 0, 'in 15 s the page and /stats were never at the same as_of');
    // Bracketing: /stats read before a message the page then shows, and read again after it.
    let brackets = 0;
    end = Date.now() + 10000;
    while (Date.now() < end && brackets < 3) {
      const before = await apiGet('/stats');
      const shown = await until(async () => {
        const s = await readShown(page);
        return s.asOf >= before.as_of && s;
      }, 5000, `the page never caught up with /stats as of ${before.as_of}`);
      const after = await apiGet('/stats');
      expect(before.total <= shown.total && shown.total <= after.total,
        `not ${before.total} <= ${shown.total} <= ${after.total} (as of ${before.as_of}, ${shown.asOf}, ${after.as_of})`);
      expect(shown.asOf <= after.as_of, `the page is as of ${shown.asOf}, after /stats read later (${after.as_of})`);
      brackets += 1;
    }
    expect(brackets === 3, `only ${brackets} bracketed reads in 10 s`);
    const last = await readShown(page);
    return `${exact} exact matches at equal as_of (total ${last.total}, ${last.bars.length} emoji bars), ${brackets} bracketed reads`;
  });

  await check('3 the numbers change when events arrive', async () => {
    const N = 40;
    const emoji = '🧪';
    const before = await readShown(page);
    const countBefore = (await apiGet('/stats')).counts[emoji] || 0;
    await postEvents(Array.from({ length: N }, (_, i) => ({ user_id: seedUser, emoji, tier: 'pro', amount: i })));
    const shown = await until(async () => {
      const s = await readShown(page);
      return s.total >= before.total + N && s;
    }, 10000, `the shown total never rose from ${before.total} by ${N}`);
    // The test emoji's own bar: the batch is the only source of it. "Show all" first, as it may
    // rank below the bars shown by default.
    const more = page.locator('#counts-more');
    if (await more.isVisible()) await more.click();
    const bar = await until(() => page.evaluate((e) => {
      const li = document.querySelector(`#counts li[data-count-emoji="${e}"]`);
      return li && Number(li.dataset.count);
    }, emoji).then((n) => n >= countBefore + N && n), 10000, `the ${emoji} bar never reached ${countBefore + N}`);
    if ((await more.isVisible()) && (await more.getAttribute('aria-expanded')) === 'true') await more.click();
    return `total ${before.total} → ${shown.total}, ${emoji} ${countBefore} → ${bar}`;
  });

  await check('4 an emoji button sends an event that shows in the last events', async () => {
    const user = `bt-${run}-click`;
    await page.fill('#send-user', user);
    if (args.token) await page.fill('#send-token', args.token);
    // Record every row the list ever shows: under load our event may stay among the newest ten
    // for less than a message's interval.
    await page.evaluate((u) => {
      window.__seen = [];
      new MutationObserver(() => {
        for (const li of document.querySelectorAll(`#recent li[data-user="${u}"]`)) {
          window.__seen.push({ partition: li.dataset.partition, offset: li.dataset.offset, emoji: li.dataset.emojiShown });
        }
      }).observe(document.getElementById('recent'), { childList: true, subtree: true });
    }, user);
    const button = page.locator('#emoji-buttons [data-emoji="🎉"]');
    expect(await button.count() === 1, 'no button [data-emoji="🎉"] in #emoji-buttons');
    const answers = [];
    page.on('response', (r) => {
      if (r.request().method() === 'POST' && new URL(r.url()).pathname === '/emoji') answers.push(r.status());
    });
    // Clicks come in bursts: under a heavy load one event is among the newest ten only briefly,
    // a few together stand a better chance of being in a message the page gets.
    let clicks = 0;
    const end = Date.now() + 15000;
    while (Date.now() < end) {
      for (let i = 0; i < 5; i++) await button.click();
      clicks += 5;
      await until(() => answers.length === clicks, 5000, `${answers.length} answers to ${clicks} clicks`);
      expect(answers.every((st) => st === 202), `POST /emoji answered ${JSON.stringify(answers)}`);
      const fb = await page.evaluate(() => [document.getElementById('send-feedback').dataset.state, document.getElementById('send-feedback').textContent]);
      expect(fb[0] === 'ok' && fb[1].includes('accepted'), `the feedback reads ${JSON.stringify(fb)}`);
      const seen = await until(() => page.evaluate(() => window.__seen.length > 0 && window.__seen[0]), 600, '')
        .catch(() => null);
      if (seen) {
        expect(seen.emoji === '🎉', `the row for ${user} shows ${seen.emoji}, not 🎉`);
        expect(seen.partition !== undefined && seen.offset !== undefined, 'the row has no data-partition/data-offset');
        return `seen after ${clicks} clicks (all 202, feedback shown) at partition ${seen.partition}, offset ${seen.offset}`;
      }
    }
    throw new CheckFailed(`none of ${clicks} clicks showed up in #recent within 15 s`);
  });

  await check('5 a filter made with the form gets live matches in the feed, and deletes', async () => {
    const id = `bt-${run}`;
    const user = `bt-${run}-filtered`;
    await page.fill('#filter-id', id);
    await page.fill('#filter-user-ids', user);
    await page.fill('#filter-emojis', '🎯, 🎈');
    await page.click('#filter-submit');
    const outcome = await until(() => page.evaluate(() => {
      const s = document.getElementById('filter-feedback').dataset.state;
      return (s === 'ok' || s === 'error') && s;
    }), 15000, 'no feedback on creating the filter');
    expect(outcome === 'ok', `creating the filter failed: ${await page.textContent('#filter-feedback')}`);
    await page.waitForSelector(`#filters li[data-filter-id="${id}"]`);
    const stored = (await apiGet(`/filters/${id}`));
    expect(JSON.stringify(stored.user_ids) === JSON.stringify([user]) && stored.emojis.length === 2,
      `the stored filter is ${JSON.stringify(stored)}`);
    await until(() => page.evaluate((f) => {
      const s = document.getElementById('feed-status');
      return s.dataset.filter === f && s.dataset.state === 'live';
    }, id), 10000, 'the feed of the new filter never went live');
    // Matching events, and others that must not show.
    const events = [1, 2, 3, 4, 5].map((i) => ({ user_id: user, emoji: i % 2 ? '🎯' : '🎈', amount: i }));
    await postEvents([...events, { user_id: user, emoji: '🔥' }, { user_id: `${user}-not`, emoji: '🎯' }]);
    let feedUsers = [];
    const rows = await until(async () => {
      feedUsers = await page.evaluate(() => [...document.querySelectorAll('#filter-feed li')].map((li) => li.dataset.user));
      return feedUsers.length >= events.length && feedUsers;
    }, 20000, `fewer than ${events.length} matches in #filter-feed`).catch(async (e) => {
      const status = await page.textContent('#feed-status');
      throw new CheckFailed(`${e.message}; the feed shows ${JSON.stringify(feedUsers)}, its status reads "${status}"`);
    });
    await sleep(500); // a non-matching event would arrive with the others
    const all = await page.evaluate(() => [...document.querySelectorAll('#filter-feed li')].map((li) => `${li.dataset.user} ${li.dataset.emojiShown}`));
    expect(all.length === events.length && all.every((r) => r.startsWith(`${user} `) && !r.endsWith('🔥')),
      `the feed shows ${JSON.stringify(all)}`);
    const received = Number(await page.getAttribute('#filter-feed', 'data-received'));
    expect(received >= 1, 'no match came over the live stream (data-received is 0)');
    // Delete through the page: gone from the list and the service; the feed says closed.
    await page.click(`#filters li[data-filter-id="${id}"] [data-action="delete"]`);
    await page.waitForSelector(`#filters li[data-filter-id="${id}"]`, { state: 'detached' });
    const gone = await fetch(new URL(`/filters/${id}`, base));
    expect(gone.status === 404, `GET /filters/${id} after deleting answered ${gone.status}`);
    await until(() => page.evaluate(() => document.getElementById('feed-status').dataset.state === 'closed'), 5000,
      'the feed did not say it closed');
    return `${rows.length} matches shown (${received} live), filter deleted`;
  });
  // Whatever happened above, leave no filter of this run behind.
  await apiDelete(`/filters/bt-${run}`);

  await check('6 user lookup shows sessions; the window picker switches', async () => {
    // A user never seen: the error the API gives, shown to the user.
    await page.fill('#lookup-user', `bt-${run}-nobody`);
    await page.click('#lookup-submit');
    await page.waitForSelector('#lookup-result .error');
    const errorText = await page.textContent('#lookup-result .error');
    expect(/never seen/.test(errorText), `the lookup error reads "${errorText}"`);
    // The browser logs the 404 itself: that line is expected, nothing else is.
    await sleep(300);
    for (let i = problems.length - 1; i >= 0; i--) {
      if (/status of 404/.test(problems[i]) && problems[i].includes('-nobody')) problems.splice(i, 1);
    }
    await page.fill('#lookup-user', seedUser);
    await page.click('#lookup-submit');
    const rows = await until(() => page.evaluate(() => document.querySelectorAll('#lookup-result tbody tr').length), 5000,
      `no session rows for ${seedUser}`);
    const api = await apiGet(`/sessions/${encodeURIComponent(seedUser)}`);
    expect(rows === Math.min(10, api.sessions.length), `${rows} rows shown, /sessions has ${api.sessions.length}`);
    const firstEvents = digits(await page.textContent('#lookup-result tbody tr td:nth-child(2)'));
    expect(firstEvents === api.sessions[0].events, `the newest session shows ${firstEvents} events, the API ${api.sessions[0].events}`);
    for (const [value, label] of [['1m', 'win-1m'], ['10s', 'win-10s'], ['lifetime', 'win-lifetime']]) {
      const asOf = (await readShown(page)).asOf;
      await page.click(`label[for="${label}"]`);
      expect(await page.isChecked(`#${label}`), `#${label} is not checked after clicking its label`);
      const shown = await until(async () => {
        const s = await readShown(page);
        return s.window === value && s.asOf > asOf && s;
      }, 10000, `no message for window ${value} after switching`);
      const info = await page.textContent('#window-info');
      if (value !== 'lifetime') {
        expect(/^(Event time .* \(last (1 min|10 s)\)|No events)/.test(info), `the window line reads "${info}"`);
        const sum = shown.bars.reduce((s, b) => s + b.count, 0);
        expect(sum <= shown.total, `window ${value}: the bars add up to ${sum}, more than the lifetime total ${shown.total}`);
      }
    }
    await until(() => page.evaluate(() => document.getElementById('conn').dataset.state === 'live'), 5000, 'not live after switching');
    return `${rows} session row(s) for ${seedUser}; 1 min, 10 s and lifetime shown`;
  });

  await check('accessibility basics: labelled inputs, named buttons, polite live region', async () => {
    const bad = await page.evaluate(() => {
      const out = [];
      for (const i of document.querySelectorAll('input')) {
        if (!i.labels.length && !i.getAttribute('aria-label')) out.push(`input #${i.id} has no label`);
      }
      for (const b of document.querySelectorAll('button')) {
        if (!(b.getAttribute('aria-label') || b.textContent.trim())) out.push(`a button has no name`);
      }
      const live = document.querySelector('[aria-live="polite"]');
      if (!live) out.push('no aria-live="polite" region');
      if (!document.documentElement.lang) out.push('no lang on <html>');
      return out;
    });
    expect(bad.length === 0, bad.join('; '));
    // Keyboard: Tab reaches the window picker and arrow keys move within it.
    await page.focus('#win-lifetime');
    await page.keyboard.press('ArrowLeft');
    expect(await page.isChecked('#win-10m'), 'ArrowLeft from Lifetime did not choose 10 min');
    await page.keyboard.press('ArrowRight');
    expect(await page.isChecked('#win-lifetime'), 'ArrowRight did not go back to Lifetime');
  });

  await check('7 screenshots, desktop 1366×900 and phone 390×844', async () => {
    const desktop = path.join(args.out, 'dashboard-desktop.png');
    await page.evaluate(() => { document.activeElement.blur(); window.scrollTo(0, 0); });
    await page.waitForSelector('#recent li');
    await page.screenshot({ path: desktop, fullPage: true });
    const phoneContext = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const phone = await phoneContext.newPage();
    watchProblems(phoneContext, phone, problems);
    await phone.goto(base.href);
    await phone.waitForSelector('#recent li');
    await until(() => phone.evaluate(() => document.getElementById('conn').dataset.state === 'live'), 10000, 'phone: never live');
    await sleep(1500); // the rate history and a few messages
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth);
    expect(overflow <= 390, `the phone page is ${overflow} px wide: it scrolls sideways`);
    const phoneShot = path.join(args.out, 'dashboard-phone.png');
    await phone.screenshot({ path: phoneShot, fullPage: true });
    await phoneContext.close();
    for (const f of [desktop, phoneShot]) {
      const bytes = await readFile(f);
      expect(bytes.length > 10000 && bytes.subarray(1, 4).toString() === 'PNG', `${f} is not a proper PNG`);
    }
    return `${desktop}, ${phoneShot}`;
  });

  await check('no console error or warning, page error or outside request in the whole run', async () => {
    expect(problems.length === 0, listProblems(problems));
  });

  await browser.close();
}

try {
  await main();
} catch (e) {
  console.log(`FAIL the run stopped: ${(e && e.stack) || e}`);
  results.push(false);
}
clearTimeout(deadline);
const failed = results.filter((r) => !r).length;
console.log(failed ? `${failed} of ${results.length} checks failed` : `all ${results.length} checks passed`);
process.exit(failed ? 1 : 0);
