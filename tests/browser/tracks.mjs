// Every track in a browser, as tests/browser_test.cc asks: hls.js in headless Chromium, on a page
// of another origin, plays a program with two audio renditions through a director: both are
// listed with their languages, the default first plays, then the other is selected and its
// fragments load through the redirects to the engines while playback goes on. With --subtitles,
// a subtitle rendition of that language is listed, selected and a cue shown. Prints one JSON
// report; exits 0 when every check passed, 1 with the failed checks on stderr, 2 on bad arguments.
//
//   node tracks.mjs --playlist URL --engines http://h:p,... --hls FILE --audio en,fr
//                   [--subtitles en] [--chromium /usr/bin/chromium]
import { blankPage, finish, launchChromium, longestStill, parseArgs, playerState,
         recordResponses, segmentsFromEngines, serveOtherOrigin, sleep, startPlayer,
         waitForPlayer } from './lib.mjs';

// The rendition a fragment's URL names: /v1/programs/{id}--{name}/segments/N.ts at the director,
// /v1/segments/{id}--{name}/N.ts at an engine.
const renditionOf = (url) => {
  const m = new URL(url).pathname.match(/--([A-Za-z0-9_-]+)\//);
  return m ? m[1] : null;
};

const currentTime = (page) => page.evaluate(() => document.getElementById('v').currentTime);

async function audioChecks(page, a, report, checks) {
  const [first, second] = a.audio;
  const tracks = await page.evaluate(() => window.hls.audioTracks.map(
    (t) => ({ id: t.id, lang: t.lang, name: t.name, default: t.default })));
  report.audio_tracks = tracks;
  const want = tracks.find((t) => t.lang === second);
  if (tracks.length !== 2 || tracks[0].lang !== first || !tracks[0].default || !want) {
    checks.push(`hls.audioTracks is not ${first} (default) and ${second}: ${JSON.stringify(tracks)}`);
    return;
  }
  report.audio_track_before = await page.evaluate(() => window.hls.audioTrack);
  await sleep(3000);
  let vg = await playerState(page);
  report.audio_before = [...new Set(vg.audio.map((f) => renditionOf(f.url)))];
  if (report.audio_before.join() !== `audio-${first}`) {
    checks.push(`before the switch, audio fragments of ${report.audio_before} (not audio-${first})`);
  }
  const t0 = await currentTime(page);
  const wall0 = Date.now();
  await page.evaluate((id) => { window.hls.audioTrack = id; }, want.id);
  const switched = await waitForPlayer(page, `(vg) => vg.audioSwitched.some((s) => s.id === ${want.id})`, 15);
  if (!switched) {
    checks.push(`no AUDIO_TRACK_SWITCHED to ${second} (track ${want.id})`);
  }
  const loaded = await waitForPlayer(page, `(vg) => vg.audio.some((f) => f.url.includes('--audio-${second}/'))`, 15);
  if (!loaded) {
    checks.push(`no fragment of audio-${second} was buffered after the switch`);
  }
  await sleep(5000);
  const t1 = await currentTime(page);
  const wall = (Date.now() - wall0) / 1000;
  vg = await playerState(page);
  report.audio_switched = vg.audioSwitched;
  report.audio_after = [...new Set(vg.audio.map((f) => renditionOf(f.url)))];
  report.advanced_after_switch = t1 - t0;
  report.wall_after_switch = wall;
  // The switch flushes the audio buffer and fetches the other rendition: a short wait is allowed,
  // playback must go on.
  if (t1 - t0 < wall - 1.5) {
    checks.push(`playback advanced ${(t1 - t0).toFixed(2)} s in the ${wall.toFixed(1)} s after the switch`);
  }
}

async function subtitleChecks(page, a, report, checks) {
  const subs = await page.evaluate(() => window.hls.subtitleTracks.map(
    (t) => ({ id: t.id, lang: t.lang, name: t.name, default: t.default })));
  report.subtitle_tracks = subs;
  const want = subs.find((t) => t.lang === a.subtitles);
  if (!want) {
    checks.push(`hls.subtitleTracks lists no ${a.subtitles} track: ${JSON.stringify(subs)}`);
    return;
  }
  await page.evaluate((id) => {
    window.hls.subtitleDisplay = true;
    window.hls.subtitleTrack = id;
  }, want.id);
  // A cue on screen: hls.js puts the WebVTT cues into a text track of the video element, showing.
  const shown = await page.waitForFunction(() => {
    for (const t of document.getElementById('v').textTracks) {
      if (t.mode === 'showing' && t.activeCues && t.activeCues.length > 0) {
        return t.activeCues[0].text;
      }
    }
    return false;
  }, { timeout: 20000, polling: 100 }).then((h) => h.jsonValue(), () => null);
  const vg = await playerState(page);
  report.subtitle_frags = vg.subtitleFrags;
  report.cue = shown;
  if (!shown) {
    checks.push(`no ${a.subtitles} cue was shown (${vg.subtitleFrags} subtitle fragments processed)`);
  }
}

async function run(browser, a, checks) {
  const server = await serveOtherOrigin(a.hls, { '/': blankPage });
  try {
    const page = await browser.newPage();
    const seen = recordResponses(page);
    await page.goto(`http://localhost:${server.address().port}/`, { waitUntil: 'load' });
    await startPlayer(page, a.playlist, {});
    const report = {};
    if (!await waitForPlayer(page, (vg) => vg.playing !== null, 30)) {
      checks.push(`playback never started: ${JSON.stringify((await playerState(page)).errors)}`);
      return report;
    }
    await audioChecks(page, a, report, checks);
    if (a.subtitles) {
      await subtitleChecks(page, a, report, checks);
    }
    const vg = await playerState(page);
    report.longest_still = longestStill(vg);
    report.errors = vg.errors;
    if (vg.fatal) {
      checks.push(`fatal hls.js error ${vg.fatal}`);
    }
    // The other language's fragments came from the engines, through the director's 302.
    const fromEngines = segmentsFromEngines(seen, a.engines);
    report.engine_renditions = [...new Set(fromEngines.map((r) => renditionOf(r.url)))];
    const other = fromEngines.filter((r) => renditionOf(r.url) === `audio-${a.audio[1]}` &&
                                            r.redirects.includes(302) && r.status === 200);
    report.other_audio_segments = other.length;
    if (other.length === 0) {
      checks.push(`no segment of audio-${a.audio[1]} came from the engines through a 302: ` +
                  JSON.stringify(report.engine_renditions));
    }
    if (a.subtitles) {
      // The WebVTT segments too: from the engines, through the director's 302.
      const vtt = seen.filter((r) => a.engines.includes(r.origin) &&
                                     new URL(r.url).pathname.endsWith('.vtt'));
      report.subtitle_segments = vtt.filter((r) => r.redirects.includes(302) && r.status === 200).length;
      if (report.subtitle_segments === 0) {
        checks.push(`no subtitle segment came from the engines through a 302: ${JSON.stringify(vtt)}`);
      }
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
    a = parseArgs(process.argv.slice(2), { subtitles: '' }, ['playlist', 'engines', 'hls', 'audio']);
    a.engines = a.engines.split(',').map((u) => new URL(u).origin);
    a.audio = a.audio.split(',');
    if (a.audio.length !== 2) {
      throw new Error('--audio names two languages, the default first');
    }
  } catch (e) {
    console.error(`tracks.mjs: ${e.message}`);
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
