// The watch page's player: the program's playlist from this director through hls.js (Safari's own
// HLS where hls.js cannot run), the viewer's login when the director asks for a token, and the
// rendition and bitrate in use. Served by the director as /web/watch.js (web/README.md).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const program = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
  const tokenKey = 'vodgrid.token';
  // What the page saw, for people reading the console and for tests (tests/browser/play.mjs).
  const state = {
    program,
    status: 'starting',
    player: null, // "hls.js" or "native"
    fatal: null, // the fatal error that stopped playback, if any
    errors: [], // every hls.js error event: {details, fatal, code}
    level: -1, // the rendition in use (an index into hls.levels)
    levels: 0,
    fragments: 0, // segments loaded
    bytes: 0,
    stalls: 0, // waits for data after playback started
    loggedIn: false,
  };
  window.vodgridWatch = state;
  let hls = null;

  const setStatus = (s) => {
    state.status = s;
    $('status').textContent = s;
  };
  const mbits = (bps) => `${(bps / 1e6).toFixed(2)} Mbit/s`;
  const token = () => sessionStorage.getItem(tokenKey);

  function playlistUrl() {
    const t = token();
    const base = `/v1/programs/${encodeURIComponent(program)}/index.m3u8`;
    return t ? `${base}?token=${encodeURIComponent(t)}` : base;
  }

  function showLogin(why) {
    $('login-why').textContent = why;
    $('login').hidden = false;
    setStatus('login needed');
    $('user').focus();
  }

  // The director relays the login to the grid's auth server (POST /v1/login/viewer).
  async function login(ev) {
    ev.preventDefault();
    $('login-error').textContent = '';
    let res;
    try {
      res = await fetch('/v1/login/viewer', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user: $('user').value, password: $('password').value }),
      });
    } catch (e) {
      $('login-error').textContent = 'the director did not answer';
      return;
    }
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      $('login-error').textContent = body.detail || `login refused (HTTP ${res.status})`;
      return;
    }
    sessionStorage.setItem(tokenKey, body.token);
    state.loggedIn = true;
    $('password').value = '';
    $('login').hidden = true;
    showTitle();
    start();
  }

  function tryPlay() {
    video.play().catch((err) => {
      if (err.name !== 'NotAllowedError') {
        return;
      }
      // Autoplay with sound needs a gesture: start muted, the controls unmute.
      video.muted = true;
      video.play().catch(() => setStatus('press play'));
    });
  }

  function describeLevel(i) {
    const l = hls.levels[i];
    if (!l) {
      return '-';
    }
    // A media playlist (one rendition) announces no size: the decoder's then.
    const size = l.width && l.height ? `${l.width}x${l.height}`
      : video.videoWidth ? `${video.videoWidth}x${video.videoHeight}` : 'size not announced';
    const rate = l.bitrate ? `, ${mbits(l.bitrate)} announced` : '';
    const codecs = l.codecSet || l.attrs?.CODECS || '';
    return `${i + 1} of ${hls.levels.length}: ${size}${rate}${codecs ? `, ${codecs}` : ''}`;
  }

  function startHls(url) {
    state.player = 'hls.js';
    hls = new Hls({ enableWorker: true });
    hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
      state.levels = d.levels.length;
      setStatus('loading');
      tryPlay();
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => {
      state.level = d.level;
      $('rendition').textContent = describeLevel(d.level);
    });
    hls.on(Hls.Events.FRAG_LOADED, (_, d) => {
      const s = d.frag.stats;
      const ms = s.loading.end - s.loading.first;
      state.fragments += 1;
      state.bytes += s.loaded;
      const last = ms > 0 ? mbits((s.loaded * 8 * 1000) / ms) : 'n/a';
      $('bitrate').textContent =
        `estimate ${mbits(hls.bandwidthEstimate)}; last segment ${last} (${s.loaded} bytes)`;
    });
    hls.on(Hls.Events.ERROR, (_, d) => {
      const code = d.response && d.response.code;
      state.errors.push({ details: d.details, fatal: d.fatal, code });
      if (!d.fatal) {
        return; // hls.js recovers on its own (a segment asked again)
      }
      hls.destroy();
      hls = null;
      if (code === 401 || code === 403) {
        sessionStorage.removeItem(tokenKey); // expired meanwhile
        showLogin('The login has ended: log in again.');
        return;
      }
      state.fatal = d.details;
      setStatus(`error: ${d.details}${code ? ` (HTTP ${code})` : ''}`);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  }

  function startNative(url) {
    state.player = 'native';
    video.src = url;
    video.addEventListener('loadedmetadata', () => {
      $('rendition').textContent = `${video.videoWidth}x${video.videoHeight} (the browser's own HLS)`;
      $('bitrate').textContent = "not reported by the browser's own HLS player";
      tryPlay();
    });
    video.addEventListener('error', () => {
      state.fatal = 'media error';
      setStatus(`error: the browser could not play (${video.error && video.error.message})`);
    });
  }

  // Asks the director first: a 401 or 403 brings the login form instead of a player error.
  async function start() {
    const url = playlistUrl();
    setStatus('asking the director');
    let res;
    try {
      res = await fetch(url, { cache: 'no-store' });
    } catch (e) {
      setStatus('error: the director did not answer');
      return;
    }
    if (res.status === 401 || res.status === 403) {
      const had = token();
      sessionStorage.removeItem(tokenKey);
      showLogin(
        res.status === 403 && had
          ? 'This login may not watch this program: log in as another viewer.'
          : "This program needs a viewer's login."
      );
      return;
    }
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      setStatus(`error: ${body.detail || `HTTP ${res.status}`}`);
      return;
    }
    if (window.Hls && Hls.isSupported()) {
      startHls(url);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      startNative(url);
    } else {
      setStatus('error: this browser cannot play HLS (no Media Source Extensions)');
    }
  }

  // The manifest, like the playlist, is read with the viewer's token (docs/protocol.md, "Who may
  // read what"): in a grid with tokens, no title until the login.
  async function showTitle() {
    const t = token();
    try {
      const res = await fetch(`/v1/programs/${encodeURIComponent(program)}`, {
        headers: t ? { Authorization: `Bearer ${t}` } : {},
      });
      const m = res.ok ? await res.json() : null;
      if (m && m.title) {
        $('title').textContent = m.title;
        document.title = `${m.title} - vodgrid`;
      }
    } catch (e) {
      // the title is a nicety; the player says what went wrong
    }
  }

  video.addEventListener('playing', () => setStatus(video.muted ? 'playing (muted)' : 'playing'));
  video.addEventListener('waiting', () => {
    if (video.currentTime > 0) {
      state.stalls += 1;
    }
    setStatus('buffering');
  });
  video.addEventListener('ended', () => setStatus('ended'));
  video.addEventListener('resize', () => {
    if (hls && state.level >= 0) {
      $('rendition').textContent = describeLevel(state.level);
    }
  });
  $('login').addEventListener('submit', login);
  $('title').textContent = program;
  showTitle();
  start();
})();
