// Adaptive bitrate in a browser, as tests/browser_test.cc asks: hls.js in headless Chromium, on a
// page of another origin, plays a multivariant program through a director; the link is throttled
// below the second rung, then opened again, and the player must go down a rendition and back up,
// each switch on a segment boundary, without a stall. Prints one JSON report; exits 0 when every
// check passed, 1 with the failed checks on stderr, 2 on bad arguments.
//
//   node abr.mjs --playlist URL --engines http://h:p,... --hls FILE [--chromium /usr/bin/chromium]
//
// The throttling is Chrome's own (DevTools protocol Network.emulateNetworkConditions, through
// puppeteer's page.emulateNetworkConditions): the fragments really arrive slower, so hls.js's
// bandwidth estimator and its ABR rules (including the emergency switch down of a fragment that
// would not arrive in time) make the decisions, as on a real network; forcing hls.nextLevel or
// the estimate would only test that hls.js obeys.
import { finish, launchChromium, longestStill, parseArgs, playerState, recordResponses,
         segmentsFromEngines, serveOtherOrigin, blankPage, sleep, startPlayer, waitForPlayer }
  from './lib.mjs';

// A buffer of 8 s at most (hls.js keeps 30 s by default, which on loopback is the whole program
// before the link is throttled): the player must keep fetching, so the link's rate matters.
const config = { maxBufferLength: 8, maxMaxBufferLength: 8, backBufferLength: 0 };

// The level indexes of hls.js in the order they played, and whether one went down then up.
function downThenUp(vg) {
  const rate = (l) => vg.levels[l].bitrate;
  let down = -1;
  for (let i = 1; i < vg.switched.length; ++i) {
    const [a, b] = [vg.switched[i - 1].level, vg.switched[i].level];
    if (rate(b) < rate(a) && down < 0) {
      down = i;
    } else if (down >= 0 && rate(b) > rate(a)) {
      return { down: vg.switched[down], up: vg.switched[i] };
    }
  }
  return { down: down >= 0 ? vg.switched[down] : null, up: null };
}

// The main fragments in the order they were buffered: at each change of level, where the new
// level's first fragment starts against where the last one buffered ended (s); and the largest
// gap or overlap between any two consecutive ones.
function boundaries(vg) {
  const switches = [];
  let worst = 0;
  for (let i = 1; i < vg.main.length; ++i) {
    const [prev, next] = [vg.main[i - 1], vg.main[i]];
    const gap = next.start - prev.end;
    worst = Math.max(worst, Math.abs(gap));
    if (next.level !== prev.level) {
      switches.push({ from: prev.level, to: next.level, prevSn: prev.sn, sn: next.sn,
                      prevEnd: prev.end, start: next.start, gap });
    }
  }
  return { switches, worstGap: worst };
}

async function run(browser, a, checks) {
  const server = await serveOtherOrigin(a.hls, { '/': blankPage });
  try {
    const page = await browser.newPage();
    const seen = recordResponses(page);
    await page.goto(`http://localhost:${server.address().port}/`, { waitUntil: 'load' });
    await startPlayer(page, a.playlist, config);
    const report = {};
    // Open link: hls.js climbs above the lowest rendition (to the top, given a moment), so that
    // there is somewhere to go down from.
    const above = await waitForPlayer(page, (vg) => vg.switched.some((s) => s.level > 0), 30);
    await waitForPlayer(page, (vg) => vg.levels.length > 0 &&
                                      vg.switched.at(-1)?.level === vg.levels.length - 1, 8);
    let vg = await playerState(page);
    if (vg.levels.length < 3) {
      checks.push(`fewer than 3 video renditions: ${JSON.stringify(vg.levels)}`);
      return report;
    }
    if (!above) {
      checks.push(`only the lowest rendition played on the open link: ${JSON.stringify(vg.switched)}`);
      return report;
    }
    // Throttled: 1.3 times what the lowest variant needs (its BANDWIDTH counts the audio it
    // plays with), below what the second needs, so the lowest is the only one that fits.
    const lowRate = vg.levels[0].bitrate * 1.3;
    report.throttled_bits_per_s = Math.round(lowRate);
    if (lowRate * 0.95 >= vg.levels[1].bitrate) {
      checks.push(`the ladder's lowest two rungs are too close for the test: ${JSON.stringify(vg.levels)}`);
    }
    report.throttle_at = (await playerState(page)).samples.at(-1)?.[0];
    await page.emulateNetworkConditions({ download: lowRate / 8, upload: lowRate / 8, latency: 0 });
    const low = await waitForPlayer(page, (vg) => vg.switched.at(-1)?.level === 0, 30);
    if (!low) {
      checks.push('the lowest rendition never played on the throttled link');
    }
    report.open_at = (await playerState(page)).samples.at(-1)?.[0];
    await page.emulateNetworkConditions(null);
    const up = await waitForPlayer(page, (vg) => vg.switched.at(-1)?.level > 0, 30);
    if (!up) {
      checks.push('no higher rendition played once the link was open again');
    }
    await sleep(2000);
    vg = await playerState(page);

    const moves = downThenUp(vg);
    const b = boundaries(vg);
    const frame = 1 / (vg.levels[0].frameRate || 25);
    Object.assign(report, {
      levels: vg.levels, switched: vg.switched, down: moves.down, up: moves.up,
      switches: b.switches, worst_gap: b.worstGap, frame,
      main: vg.main.map((f) => [f.level, f.sn, Number(f.start.toFixed(3)), Number(f.end.toFixed(3))]),
      waiting: vg.waiting, longest_still: longestStill(vg), playing: vg.playing,
      stalled_errors: vg.errors.filter((e) => e.details === 'bufferStalledError').length,
      errors: vg.errors, fatal: vg.fatal, current_time: vg.samples.at(-1)?.[1],
    });
    if (!moves.down || !moves.up) {
      checks.push(`the player did not go down then up: ${JSON.stringify(vg.switched)}`);
    }
    if (b.switches.length === 0) {
      checks.push('no change of level among the fragments buffered');
    }
    for (const s of b.switches) {
      if (Math.abs(s.gap) > frame + 1e-3) {
        checks.push(`a switch off a segment boundary: ${JSON.stringify(s)}`);
      }
    }
    if (b.worstGap > frame + 1e-3) {
      checks.push(`fragments buffered with a gap or an overlap of ${b.worstGap.toFixed(3)} s`);
    }
    if (report.stalled_errors > 0 || vg.waiting.length > 0 || report.longest_still > 1.0) {
      checks.push(`a stall: ${report.stalled_errors} bufferStalledError, ${vg.waiting.length} ` +
                  `waiting, currentTime still for ${report.longest_still.toFixed(2)} s at most`);
    }
    if (vg.fatal) {
      checks.push(`fatal hls.js error ${vg.fatal}`);
    }
    const segs = segmentsFromEngines(seen, a.engines);
    report.segments = segs.length;
    report.redirected = segs.filter((r) => r.redirects.includes(302)).length;
    report.renditions = [...new Set(segs.map((r) => new URL(r.url).pathname.split('/')[3]))];
    if (report.redirected === 0) {
      checks.push('no segment came from the engines through the director\'s 302');
    }
    await page.close();
    return report;
  } finally {
    server.close();
  }
}

async function main() {
  let a;
  try {
    a = parseArgs(process.argv.slice(2), {}, ['playlist', 'engines', 'hls']);
    a.engines = a.engines.split(',').map((u) => new URL(u).origin);
  } catch (e) {
    console.error(`abr.mjs: ${e.message}`);
    process.exit(2);
  }
  const chromium = await launchChromium(a.chromium);
  const checks = [];
  let report = {};
  try {
    report = await run(chromium.browser, a, checks);
  } catch (e) {
    checks.push(`exception: ${e.stack || e}`);
  } finally {
    await chromium.close();
  }
  finish(report, checks);
}

main();
