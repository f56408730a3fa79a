// Opens the registry's dashboard in headless Chromium (Debian's chromium, driven with
// puppeteer-core), as tests/dashboard_test.cc asks: logs in with its form, finds every station,
// every engine with its status and stream count, a program's distribution; then tells the test it
// is ready (a file), and once the test has killed an engine (another file, holding the kill's time
// in Unix ms) measures how long the page takes to show that engine down. Writes a screenshot.
// Prints one JSON report; exits 0 when every check passed, 1 with the failed checks on stderr, 2 on
// bad arguments.
//
//   node dashboard.mjs --url http://REGISTRY/dashboard --stations a,b --engines a-1,b-1,...
//                      --program ID --playing STATION --kill ENGINE --handshake DIR
//                      --screenshot FILE [--user U --password P] [--within-ms 3000]
//                      [--chromium /usr/bin/chromium]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const required = ['url', 'stations', 'engines', 'program', 'playing', 'kill', 'handshake',
  'screenshot'];

function parseArgs(argv) {
  const a = { chromium: '/usr/bin/chromium', user: '', password: '', 'within-ms': 3000 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in a) && !required.includes(key)) {
      throw new Error(`unknown option ${argv[i]}`);
    }
    if (argv[i + 1] === undefined) {
      throw new Error(`${argv[i]} needs a value`);
    }
    a[key] = argv[i + 1];
  }
  for (const k of required) {
    if (!a[k]) {
      throw new Error(`--${k} is required`);
    }
  }
  a.stations = a.stations.split(',');
  a.engines = a.engines.split(',');
  a['within-ms'] = Number(a['within-ms']);
  return a;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Waits for `fn` (run in the page) to be true; false after `ms`.
const until = (page, fn, ms, ...args) => page
  .waitForFunction(fn, { timeout: ms, polling: 50 }, ...args)
  .then(() => true, () => false);

// What the page shows now: per station its card and map mark, per engine its row, the program's
// row. Read from the DOM, as a person would see it.
function shown(page, program) {
  return page.evaluate((prog) => {
    const out = { stations: {}, engines: {}, program: null, updates: window.vodgridDashboard.updates };
    for (const card of document.querySelectorAll('#stations .card')) {
      out.stations[card.dataset.station] = {
        facts: card.querySelector('.facts').textContent,
        onMap: !!document.querySelector(`#map g.station[data-station="${card.dataset.station}"]`),
      };
    }
    for (const row of document.querySelectorAll('#stations tr[data-engine]')) {
      out.engines[row.dataset.engine] = {
        status: row.dataset.status,
        streams: Number(row.querySelector('.streams').textContent),
        bandwidth: row.querySelector('.bandwidth').textContent,
        free: row.querySelector('.free').textContent,
      };
    }
    const row = document.querySelector(`#programs tr[data-program="${prog}"]`);
    if (row) {
      out.program = {};
      for (const td of row.querySelectorAll('td[data-station]')) {
        out.program[td.dataset.station] = { held: Number(td.dataset.held), text: td.textContent };
      }
    }
    return out;
  }, program);
}

async function login(page, a, checks) {
  const form = await page.waitForSelector('#login:not([hidden]), #board:not([hidden])',
    { timeout: 15000 }).then(() => true, () => false);
  if (!form) {
    checks.push('neither the login form nor the board showed');
    return false;
  }
  if (await page.$('#board:not([hidden])')) {
    return true; // a grid without an auth server
  }
  if (!a.user) {
    checks.push('the page asks for a login and no --user was given');
    return false;
  }
  await page.type('#user', a.user);
  await page.type('#password', a.password);
  await page.click('#login-submit');
  const ok = await until(page, () => window.vodgridDashboard.loggedIn &&
    window.vodgridDashboard.updates > 0, 15000);
  if (!ok) {
    const why = await page.$eval('#login-error', (e) => e.textContent);
    checks.push(`the login failed: ${why}`);
  }
  return ok;
}

// Every station reachable on the map and in a card, every engine up with a stream count, the
// program held somewhere, and a stream at an engine of the playing station: waits up to 40 s.
async function findEverything(page, a, checks) {
  const deadline = Date.now() + 40000;
  let s;
  let streamsSeen = 0;
  while (Date.now() < deadline) {
    s = await shown(page, a.program);
    const playing = a.engines.filter((e) => e.startsWith(`${a.playing}-`));
    streamsSeen = Math.max(streamsSeen, ...playing.map((e) => s.engines[e]?.streams || 0));
    const stationsOk = a.stations.every((n) => s.stations[n]?.onMap &&
      s.stations[n].facts.startsWith('director reachable'));
    const enginesOk = a.engines.every((e) => s.engines[e]?.status === 'up' &&
      Number.isFinite(s.engines[e].streams));
    const programOk = s.program && s.program[a.playing]?.held > 0;
    if (stationsOk && enginesOk && programOk && streamsSeen > 0) {
      return { shown: s, streamsSeen };
    }
    await sleep(100);
  }
  for (const n of a.stations) {
    if (!s.stations[n]?.onMap || !s.stations[n].facts.startsWith('director reachable')) {
      checks.push(`station ${n} is not shown reachable: ${JSON.stringify(s.stations[n])}`);
    }
  }
  for (const e of a.engines) {
    if (s.engines[e]?.status !== 'up') {
      checks.push(`engine ${e} is not shown up: ${JSON.stringify(s.engines[e])}`);
    }
  }
  if (!s.program || !(s.program[a.playing]?.held > 0)) {
    checks.push(`program ${a.program}'s distribution to ${a.playing} is not shown: ` +
      JSON.stringify(s.program));
  }
  if (streamsSeen === 0) {
    checks.push(`no engine of ${a.playing} was shown with a stream while viewers played`);
  }
  return { shown: s, streamsSeen };
}

async function waitForFile(file, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (fs.existsSync(file)) {
      const text = fs.readFileSync(file, 'utf8').trim();
      if (text) {
        return text;
      }
    }
    await sleep(20);
  }
  return null;
}

// Tells the test to kill the engine, then how long the page took to show it down.
async function killAndWatch(page, a, checks) {
  fs.writeFileSync(path.join(a.handshake, 'ready'), 'ready\n');
  const killed = await waitForFile(path.join(a.handshake, 'killed'), 60000);
  if (!killed) {
    checks.push('the test never said it killed the engine');
    return {};
  }
  const killedAt = Number(killed);
  const down = await until(page, (e) => document.querySelector(`tr[data-engine="${e}"]`)
    ?.dataset.status === 'down', 15000, a.kill);
  const ms = Date.now() - killedAt;
  if (!down) {
    checks.push(`engine ${a.kill} was not shown down 15 s after it was killed`);
  } else if (ms > a['within-ms']) {
    checks.push(`engine ${a.kill} was shown down ${ms} ms after it was killed (limit ` +
      `${a['within-ms']} ms)`);
  }
  const event = await page.evaluate((e) => [...document.querySelectorAll('#events li')]
    .some((li) => li.className === 'engine_down' && li.textContent.includes(e)), a.kill);
  return { down, ms_to_down: ms, event_listed: event };
}

async function main() {
  let a;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`dashboard.mjs: ${e.message}`);
    process.exit(2);
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'vodgrid-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: a.chromium,
    headless: true,
    userDataDir: profile,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const checks = [];
  const report = {};
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 1000 });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(a.url, { waitUntil: 'load' });
    report.logged_in = await login(page, a, checks);
    if (report.logged_in) {
      const found = await findEverything(page, a, checks);
      report.before = found.shown;
      report.streams_seen = found.streamsSeen;
      Object.assign(report, await killAndWatch(page, a, checks));
      report.after = await shown(page, a.program);
      await sleep(300); // the event list and the map redrawn
    }
    await page.screenshot({ path: a.screenshot, fullPage: true });
    report.screenshot = a.screenshot;
    report.page_errors = errors;
    if (errors.length > 0) {
      checks.push(`the page threw: ${errors.join('; ')}`);
    }
  } catch (e) {
    checks.push(`exception: ${e.stack || e}`);
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  report.failed = checks;
  console.log(JSON.stringify(report));
  if (checks.length > 0) {
    console.error(checks.join('\n'));
    process.exit(1);
  }
}

main();
