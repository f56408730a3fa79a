// Startup and rebuffering in a browser, for bench/startup_in_browser: hls.js (its defaults) in
// headless Chromium, on a page of another origin, plays each of the given URLs in turn, `runs`
// times, alternating, each run in a fresh browser context (no cache, no open connection: a first
// visit) for `seconds` of playback. One line per run on stdout:
//
//   run N NAME startup_ms first_frame_ms rebuffers rebuffer_ms advanced_s errors error_names
//
// startup_ms: from just before hls.loadSource to the first `playing` event; first_frame_ms: to the
// first frame presented (requestVideoFrameCallback); rebuffers: `waiting` events after the first
// `playing`, rebuffer_ms the time spent in them; errors: hls.js's, fatal or not (names, or -).
// --warmup runs of each first are not printed. Exits 1 when a run did not start or hit a fatal
// error (the line says which), 2 on bad arguments.
//
//   node startup.mjs --urls NAME=URL,NAME=URL --hls FILE [--runs 20] [--seconds 8] [--warmup 1]
import { blankPage, launchChromium, parseArgs, playerState, serveOtherOrigin, sleep, startPlayer,
         waitForPlayer } from './lib.mjs';

async function oneRun(browser, pageUrl, src, seconds) {
  const context = await browser.createBrowserContext();
  try {
    const page = await context.newPage();
    await page.setCacheEnabled(false);
    await page.goto(pageUrl, { waitUntil: 'load' });
    await startPlayer(page, src, {});
    const started = await waitForPlayer(page, (vg) => vg.playing !== null || vg.fatal, 30);
    let vg = await playerState(page);
    if (!started || vg.playing === null) {
      return { failed: `did not start: ${vg.fatal || 'timeout'} ${JSON.stringify(vg.errors)}` };
    }
    await sleep(seconds * 1000);
    vg = await playerState(page);
    // A wait still open at the end counts until now.
    const last = vg.waiting.at(-1);
    const open = last && vg.samples.at(-1)[0] > last.t &&
                 !vg.samples.some(([t, ct]) => t > last.t && ct > last.currentTime + 1e-3);
    const rebufferMs = vg.rebufferMs + (open ? vg.samples.at(-1)[0] - last.t : 0);
    const advanced = vg.samples.at(-1)[1] - (vg.samples.find(([t]) => t >= vg.playing)?.[1] ?? 0);
    return { startup: vg.playing, firstFrame: vg.firstFrame, rebuffers: vg.waiting.length,
             rebufferMs, advanced, errors: vg.errors.map((e) => e.details),
             failed: vg.fatal ? `fatal ${vg.fatal}` : null };
  } finally {
    await context.close();
  }
}

async function main() {
  let a;
  try {
    a = parseArgs(process.argv.slice(2), { runs: 20, seconds: 8, warmup: 1 }, ['urls', 'hls']);
    a.runs = Number(a.runs);
    a.seconds = Number(a.seconds);
    a.warmup = Number(a.warmup);
    a.urls = a.urls.split(',').map((kv) => {
      const i = kv.indexOf('=');
      if (i <= 0) {
        throw new Error(`--urls: '${kv}' is not NAME=URL`);
      }
      return [kv.slice(0, i), kv.slice(i + 1)];
    });
  } catch (e) {
    console.error(`startup.mjs: ${e.message}`);
    process.exit(2);
  }
  const server = await serveOtherOrigin(a.hls, { '/': blankPage });
  const pageUrl = `http://localhost:${server.address().port}/`;
  const chromium = await launchChromium(a.chromium);
  let failed = false;
  try {
    for (let w = 0; w < a.warmup; ++w) {
      for (const [, url] of a.urls) {
        await oneRun(chromium.browser, pageUrl, url, 2);
      }
    }
    for (let r = 1; r <= a.runs; ++r) {
      // Alternate which server goes first from run to run.
      const order = r % 2 ? a.urls : [...a.urls].reverse();
      for (const [name, url] of order) {
        const m = await oneRun(chromium.browser, pageUrl, url, a.seconds);
        if (m.failed) {
          failed = true;
          console.log(`run ${r} ${name} failed: ${m.failed}`);
          continue;
        }
        console.log(`run ${r} ${name} ${m.startup.toFixed(1)} ${(m.firstFrame ?? -1).toFixed(1)} ` +
                    `${m.rebuffers} ${m.rebufferMs.toFixed(0)} ${m.advanced.toFixed(2)} ` +
                    `${m.errors.length} ${m.errors.join(',') || '-'}`);
      }
    }
  } finally {
    await chromium.close();
    server.close();
  }
  process.exit(failed ? 1 : 0);
}

main();
