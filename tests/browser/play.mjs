// Plays a program in headless Chromium (Debian's chromium, driven with puppeteer-core), as
// tests/browser_test.cc asks: first from a page of another origin (served here by node's http
// module) with hls.js through the director's playlist and redirects, then through the director's
// watch page, logging in with its form. Prints one JSON report; exits 0 when every check passed,
// 1 with the failed checks on stderr, 2 on bad arguments. With --ca (the grid on HTTPS, issue 17):
// Chromium trusts that CA, the page of another origin is served over HTTPS too (--cert and --key,
// a certificate for localhost), and every response either page received must be an https:// one.
//
//   node play.mjs --playlist URL --watch URL --engines http://h:p,... --hls FILE
//                 [--user U --password P] [--seconds 10] [--chromium /usr/bin/chromium]
//                 [--ca CA.pem --cert localhost.pem --key localhost.key]
import { finish, launchChromium, parseArgs as parseOptions, recordResponses, segmentsFromEngines,
         serveOtherOrigin, sleep } from './lib.mjs';

function parseArgs(argv) {
  const a = parseOptions(argv, { seconds: 10, user: '', password: '', ca: '', cert: '', key: '' },
                         ['playlist', 'watch', 'engines', 'hls']);
  if (a.ca && (!a.cert || !a.key)) {
    throw new Error('--ca needs --cert and --key (the page of another origin is served over HTTPS)');
  }
  a.seconds = Number(a.seconds);
  a.engines = a.engines.split(',').map((u) => new URL(u).origin);
  return a;
}

// The page of another origin: hls.js from this server, the playlist from the director.
const otherPage = `<!doctype html><html><head><meta charset="utf-8"><title>other origin</title></head>
<body><video id="v" muted playsinline></video><script src="/hls.min.js"></script><script>
const state = window.vodgridWatch = { errors: [], fatal: null, levels: 0, player: 'hls.js' };
const src = new URLSearchParams(location.search).get('src');
const video = document.getElementById('v');
const hls = new Hls();
hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => { state.levels = d.levels.length; video.play(); });
hls.on(Hls.Events.ERROR, (_, d) => {
  state.errors.push({ details: d.details, fatal: d.fatal, code: d.response && d.response.code });
  if (d.fatal) { state.fatal = d.details; }
});
hls.loadSource(src);
hls.attachMedia(video);
</script></body></html>`;

// Waits for playback to start, then plays `seconds` of wall time; how far currentTime advanced.
async function playFor(page, seconds, checks, label) {
  const started = await page
    .waitForFunction(() => document.querySelector('video').currentTime > 0,
                     { timeout: 30000, polling: 100 })
    .then(() => true, () => false);
  if (!started) {
    const st = await page.evaluate(() => window.vodgridWatch);
    checks.push(`${label}: playback never started (${JSON.stringify(st)})`);
    return { advanced: 0 };
  }
  const t0 = await page.evaluate(() => document.querySelector('video').currentTime);
  await sleep(seconds * 1000);
  const t1 = await page.evaluate(() => document.querySelector('video').currentTime);
  const st = await page.evaluate(() => window.vodgridWatch);
  const advanced = t1 - t0;
  if (advanced < seconds - 2) {
    checks.push(`${label}: currentTime advanced ${advanced.toFixed(2)} s in ${seconds} s`);
  }
  if (st.fatal) {
    checks.push(`${label}: fatal hls.js error ${st.fatal}: ${JSON.stringify(st.errors)}`);
  }
  return { advanced, state: st };
}

// With --ca: every response a page received from the network came over https:// (mixed content
// would be blocked anyway; the grid must not have named any). data: and blob: URLs (the player's
// icons, the MediaSource) are the page's own, not fetched.
function checkAllHttps(seen, a, label, checks) {
  if (!a.ca) {
    return;
  }
  const fetched = seen.filter((r) => !/^(data|blob):/.test(r.url));
  const plain = fetched.filter((r) => !r.url.startsWith('https://')).map((r) => r.url);
  if (plain.length > 0 || fetched.length === 0) {
    checks.push(`${label}: not every response came over https: ${JSON.stringify(plain.slice(0, 8))}`);
  }
  return fetched.length;
}

function checkSegments(seen, engines, label, checks) {
  const fromEngines = segmentsFromEngines(seen, engines);
  const bytes = fromEngines.reduce((n, r) => n + r.bytes, 0);
  if (fromEngines.length === 0) {
    checks.push(`${label}: no segment came from the engines: ${JSON.stringify(seen.slice(0, 8))}`);
  }
  for (const r of fromEngines) {
    if (r.status !== 200 && r.status !== 206) {
      checks.push(`${label}: an engine answered ${r.status} for ${r.url}`);
    }
    if (!r.acao) {
      checks.push(`${label}: an engine's answer had no Access-Control-Allow-Origin: ${r.url}`);
    }
  }
  const redirected = fromEngines.filter((r) => r.redirects.includes(302)).length;
  if (fromEngines.length > 0 && redirected === 0) {
    checks.push(`${label}: no segment came through the director's 302`);
  }
  return { segments: fromEngines.length, bytes, redirected,
           engines: [...new Set(fromEngines.map((r) => r.origin))] };
}

async function otherOrigin(browser, a, checks) {
  const server = await serveOtherOrigin(a.hls, { '/': otherPage },
                                        a.ca ? { cert: a.cert, key: a.key } : undefined);
  const port = server.address().port;
  try {
    const page = await browser.newPage();
    const seen = recordResponses(page);
    // "localhost" against the director's "127.0.0.1": another origin and another site.
    const pageUrl = `${a.ca ? 'https' : 'http'}://localhost:${port}/?src=${encodeURIComponent(a.playlist)}`;
    await page.goto(pageUrl, { waitUntil: 'load' });
    const play = await playFor(page, a.seconds, checks, 'other origin');
    const segs = checkSegments(seen, a.engines, 'other origin', checks);
    const https = checkAllHttps(seen, a, 'other origin', checks);
    // A control endpoint of the same director, from this page: the browser must not get it.
    const control = new URL('/v1/engines', a.playlist).href;
    const controlRead = await page.evaluate(async (u) => {
      try {
        const r = await fetch(u);
        return `read: HTTP ${r.status}`;
      } catch (e) {
        return 'refused';
      }
    }, control);
    if (controlRead !== 'refused') {
      checks.push(`other origin: the page could read the control endpoint ${control} (${controlRead})`);
    }
    await page.close();
    return { page: pageUrl, https, advanced: play.advanced, levels: play.state?.levels,
             errors: play.state?.errors, ...segs, control: controlRead };
  } finally {
    server.close();
  }
}

async function watchPage(browser, a, checks) {
  const page = await browser.newPage();
  const seen = recordResponses(page);
  await page.goto(a.watch, { waitUntil: 'load' });
  let loggedIn = false;
  if (a.user) {
    const form = await page.waitForSelector('#login:not([hidden])', { timeout: 15000 })
      .then(() => true, () => false);
    if (!form) {
      const st = await page.evaluate(() => window.vodgridWatch);
      checks.push(`watch page: no login form (${JSON.stringify(st)})`);
      await page.close();
      return {};
    }
    await page.type('#user', a.user);
    await page.type('#password', a.password);
    await page.click('#login-submit');
    loggedIn = await page.waitForFunction(() => window.vodgridWatch.loggedIn, { timeout: 15000 })
      .then(() => true, () => false);
    if (!loggedIn) {
      const why = await page.$eval('#login-error', (e) => e.textContent);
      checks.push(`watch page: the login failed: ${why}`);
    }
  }
  const play = await playFor(page, a.seconds, checks, 'watch page');
  const shown = await page.evaluate(() => ({
    status: document.getElementById('status').textContent,
    rendition: document.getElementById('rendition').textContent,
    bitrate: document.getElementById('bitrate').textContent,
  }));
  if (shown.rendition === '-' || shown.bitrate === '-') {
    checks.push(`watch page: the rendition or bitrate is not shown: ${JSON.stringify(shown)}`);
  }
  const segs = checkSegments(seen, a.engines, 'watch page', checks);
  const https = checkAllHttps(seen, a, 'watch page', checks);
  await page.close();
  return { loggedIn, https, advanced: play.advanced, shown, player: play.state?.player,
           stalls: play.state?.stalls, errors: play.state?.errors, ...segs };
}

async function main() {
  let a;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`play.mjs: ${e.message}`);
    process.exit(2);
  }
  const chromium = await launchChromium(a.chromium, a.ca);
  const browser = chromium.browser;
  const checks = [];
  const report = {};
  try {
    report.mse_h264_aac = await (await browser.newPage()).evaluate(() =>
      MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f,mp4a.40.2"'));
    if (!report.mse_h264_aac) {
      checks.push('this chromium does not play H.264/AAC in Media Source Extensions');
    }
    report.other_origin = await otherOrigin(browser, a, checks);
    report.watch_page = await watchPage(browser, a, checks);
  } catch (e) {
    checks.push(`exception: ${e.stack || e}`);
  } finally {
    await chromium.close();
  }
  finish(report, checks);
}

main();
