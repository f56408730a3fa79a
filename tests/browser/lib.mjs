// What the browser scripts share (play.mjs, abr.mjs, tracks.mjs, startup.mjs): their options,
// Debian's chromium launched headless with puppeteer-core, a page of another origin served by
// node's http (or https) module, and the record of every response a page received.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --key value pairs into `defaults` (every key there may be given); `required` must be given.
// Throws on an unknown or missing option.
export function parseArgs(argv, defaults, required) {
  const a = { chromium: '/usr/bin/chromium', ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in a) && !required.includes(key)) {
      throw new Error(`unknown option ${argv[i]}`);
    }
    if (i + 1 >= argv.length) {
      throw new Error(`${argv[i]} needs a value`);
    }
    a[key] = argv[i + 1];
  }
  for (const k of required) {
    if (!a[k]) {
      throw new Error(`--${k} is required`);
    }
  }
  return a;
}

// Headless chromium with a fresh profile; close() also removes the profile. `ca` (a PEM file):
// a CA Chromium trusts for servers, as an operator's machine would: put with certutil into the
// NSS database of a temporary HOME (Chromium on Linux reads $HOME/.pki/nssdb), never by
// --ignore-certificate-errors, so that the test sees the certificate chains verified.
export async function launchChromium(executablePath, ca) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'vodgrid-chromium-'));
  const env = { ...process.env };
  if (ca) {
    env.HOME = path.join(profile, 'home');
    const nssdb = `sql:${path.join(env.HOME, '.pki', 'nssdb')}`;
    fs.mkdirSync(path.join(env.HOME, '.pki', 'nssdb'), { recursive: true });
    execFileSync('certutil', ['-N', '-d', nssdb, '--empty-password']);
    execFileSync('certutil', ['-A', '-d', nssdb, '-n', 'vodgrid test CA', '-t', 'C,,', '-i', ca]);
  }
  const browser = await puppeteer.launch({
    executablePath,
    env,
    headless: true, // --headless
    userDataDir: path.join(profile, 'chromium'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync',
           '--autoplay-policy=no-user-gesture-required'],
  });
  return {
    browser,
    async close() {
      await browser.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

// A page of a video element and hls.js, for scripts that drive hls.js from page.evaluate.
export const blankPage = `<!doctype html><html><head><meta charset="utf-8"><title>player</title>
</head><body><video id="v" muted playsinline></video><script src="/hls.min.js"></script>
</body></html>`;

// Serves hls.js at /hls.min.js and `pages` ({"/": html, ...}, the query ignored) on 127.0.0.1 at a
// free port. Open it as http://localhost:PORT/: "localhost" against the grid's "127.0.0.1" is
// another origin and another site. `tls` ({ cert, key }: PEM files for localhost): over HTTPS,
// https://localhost:PORT/.
export function serveOtherOrigin(hlsFile, pages, tls) {
  const js = fs.readFileSync(hlsFile);
  const serve = (req, res) => {
    const p = req.url.split('?')[0];
    if (p === '/hls.min.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' });
      res.end(js);
    } else if (p in pages) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(pages[p]);
    } else {
      res.writeHead(404);
      res.end();
    }
  };
  const server = tls
    ? https.createServer({ cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) }, serve)
    : http.createServer(serve);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// Every response the page received, with where it came from; the segments' final answers are
// those of the engines (the director's 302s are in their redirect chains).
export function recordResponses(page) {
  const seen = [];
  page.on('response', (res) => {
    const req = res.request();
    const headers = res.headers();
    seen.push({
      url: res.url(),
      origin: new URL(res.url()).origin,
      status: res.status(),
      redirects: req.redirectChain().map((r) => r.response() && r.response().status()),
      acao: headers['access-control-allow-origin'] || null,
      bytes: Number(headers['content-length'] || 0),
    });
  });
  return seen;
}

// The engines' answers for segments among `seen` (engines: origins).
export function segmentsFromEngines(seen, engines) {
  return seen.filter((r) => engines.includes(r.origin) && new URL(r.url).pathname.endsWith('.ts'));
}

// Prints the report and exits: 0 when no check failed, 1 with the failed checks on stderr.
export function finish(report, checks) {
  report.failed = checks;
  console.log(JSON.stringify(report));
  if (checks.length > 0) {
    console.error(checks.join('\n'));
    process.exit(1);
  }
  process.exit(0);
}

// Starts hls.js (config: hls.js options) on the video element of blankPage with `src`, and
// records in window.vg what the scripts assert on, times in ms from just before loadSource:
// levels; LEVEL_SWITCHING and LEVEL_SWITCHED; the fragments buffered (main and audio); errors;
// the first `playing` event and the first frame presented (requestVideoFrameCallback); every
// `waiting` after the first `playing` and how long until playback resumed; currentTime every
// 200 ms; audio and subtitle track events; the cues shown.
export async function startPlayer(page, src, config) {
  await page.evaluate((src, config) => {
    const video = document.getElementById('v');
    const vg = window.vg = {
      levels: [], switching: [], switched: [], main: [], audio: [], errors: [], fatal: null,
      playing: null, firstFrame: null, waiting: [], rebufferMs: 0, samples: [],
      audioSwitched: [], subtitleFrags: 0, cues: [], ended: false,
    };
    const hls = window.hls = new Hls(config);
    const now = () => performance.now() - vg.t0;
    const E = Hls.Events;
    hls.on(E.MANIFEST_PARSED, (_, d) => {
      vg.levels = d.levels.map((l) => ({ bitrate: l.bitrate, height: l.height,
                                         frameRate: l.frameRate }));
      video.play().catch((e) => vg.errors.push({ details: `play(): ${e}`, fatal: false }));
    });
    hls.on(E.LEVEL_SWITCHING, (_, d) => vg.switching.push({ t: now(), level: d.level }));
    hls.on(E.LEVEL_SWITCHED, (_, d) => vg.switched.push({ t: now(), level: d.level }));
    hls.on(E.FRAG_BUFFERED, (_, d) => {
      const f = d.frag;
      const rec = { t: now(), level: f.level, sn: f.sn, start: f.start, end: f.start + f.duration,
                    url: f.url };
      if (f.type === 'main') {
        vg.main.push(rec);
      } else if (f.type === 'audio') {
        vg.audio.push(rec);
      }
    });
    hls.on(E.AUDIO_TRACK_SWITCHED, (_, d) => vg.audioSwitched.push({ t: now(), id: d.id }));
    hls.on(E.SUBTITLE_FRAG_PROCESSED, (_, d) => { if (d.success !== false) vg.subtitleFrags++; });
    hls.on(E.ERROR, (_, d) => {
      vg.errors.push({ t: now(), details: d.details, fatal: d.fatal,
                       code: d.response && d.response.code });
      if (d.fatal) { vg.fatal = d.details; }
    });
    let waitingSince = null;
    video.addEventListener('playing', () => {
      if (vg.playing === null) {
        vg.playing = now();
      } else if (waitingSince !== null) {
        vg.rebufferMs += now() - waitingSince;
      }
      waitingSince = null;
    });
    video.addEventListener('waiting', () => {
      if (vg.playing !== null && waitingSince === null) {
        waitingSince = now();
        vg.waiting.push({ t: waitingSince, currentTime: video.currentTime });
      }
    });
    video.addEventListener('ended', () => { vg.ended = true; });
    video.requestVideoFrameCallback(() => { vg.firstFrame = now(); });
    setInterval(() => vg.samples.push([now(), video.currentTime]), 200);
    vg.t0 = performance.now();
    hls.loadSource(src);
    hls.attachMedia(video);
  }, src, config);
}

// window.vg of the page (startPlayer).
export const playerState = (page) => page.evaluate(() => window.vg);

// Waits until `pred(window.vg)` (a function's source, run in the page) is true; false after
// `seconds`.
export function waitForPlayer(page, pred, seconds) {
  return page.waitForFunction(`(${pred})(window.vg)`, { timeout: seconds * 1000, polling: 100 })
    .then(() => true, () => false);
}

// The longest wall time (s) after the first `playing` during which currentTime did not advance,
// from the 200 ms samples.
export function longestStill(vg) {
  let longest = 0;
  let since = null;
  let last = null;
  for (const [t, ct] of vg.samples) {
    if (vg.playing === null || t < vg.playing) {
      continue;
    }
    if (last === null || ct > last + 1e-3) {
      since = t;
    }
    last = ct;
    longest = Math.max(longest, (t - since) / 1000);
  }
  return longest;
}
