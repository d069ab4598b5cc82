// @ts-check
/**
 * Reaching a meeting: from a network that blocks UDP: the browser relays
 * through a real TURN server (Debian's coturn) over TCP, with the
 * short-lived credentials zync hands out (`GET /api/ice-servers`), on a
 * zync serving HTTPS itself (a self-signed certificate made with openssl);
 * straight to the SFU over ICE-TCP when all UDP is dropped; and across a
 * restart of the server, as in an upgrade.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, Socket } from 'node:net';
import {
  NOBODY, createMeeting, expectAudio, expectPlayingVideos, launchBrowser, launchBrowserAsNobody,
  openAndJoin, requireIsolation, screenshot, signUp, startServer, tile, until,
} from '../lib/harness.js';

const SECRET = 'e2e-turn-secret-0123456789';

/** A free TCP port on loopback. @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * Starts coturn on `ip`:`port` with the TURN REST API secret: plain TURN
 * over TCP, or with `tls` TURN over TLS only (as on port 443).
 * Loopback peers must be allowed explicitly: the SFU is on 127.0.0.1 here.
 * @param {number} port
 * @param {{ip?: string, tls?: {cert: string, key: string}}} [options]
 */
async function startTurn(port, { ip = '127.0.0.1', tls } = {}) {
  const listen = tls
    ? ['--no-udp', '--no-tcp', '--no-dtls', `--tls-listening-port=${port}`, `--cert=${tls.cert}`, `--pkey=${tls.key}`]
    : ['--no-tls', '--no-dtls', `--listening-port=${port}`];
  const child = spawn('turnserver', [
    '-n', '--no-cli', '--fingerprint', ...listen,
    `--listening-ip=${ip}`, '--relay-ip=127.0.0.1',
    '--min-port=40000', '--max-port=40100',
    '--use-auth-secret', `--static-auth-secret=${SECRET}`, '--realm=zync.test',
    '--allow-loopback-peers', '--log-file=stdout', '--simple-log',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (chunk) => { log += chunk; });
  child.stderr.on('data', (chunk) => { log += chunk; });
  // Ready once it accepts TCP.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = new Socket();
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
      socket.connect(port, ip);
    });
    if (ok) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`coturn did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    },
  };
}

/**
 * A self-signed certificate for 127.0.0.1 in a new directory.
 * @returns {{dir: string, cert: string, key: string}}
 */
function selfSignedCertificate() {
  const dir = mkdtempSync(join(tmpdir(), 'zync-e2e-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost',
  ], { stdio: 'ignore' });
  return { dir, cert, key };
}

/**
 * The local candidate each of the page's peer connections uses.
 * @param {import('playwright-core').Page} page
 */
async function selectedCandidates(page) {
  return page.evaluate(async () => {
    const media = /** @type {any} */ (window).zync.room.media;
    const out = [];
    for (const pc of [media.publish, media.subscribe]) {
      const stats = await pc.getStats();
      let pairId = null;
      stats.forEach((/** @type {any} */ s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      });
      const pair = pairId && stats.get(pairId);
      const local = pair && stats.get(pair.localCandidateId);
      const remote = pair && stats.get(pair.remoteCandidateId);
      out.push(local ? {
        type: local.candidateType,
        relayProtocol: local.relayProtocol,
        remote: remote?.candidateType,
        protocol: remote?.protocol,
        connected: pc.connectionState === 'connected',
      } : null);
    }
    return out;
  });
}

/**
 * Ada and Bob see and hear each other, and both of Bob's connections are
 * up (so their selected candidates can be read).
 * @param {{page: import('playwright-core').Page}} a
 * @param {{page: import('playwright-core').Page}} b
 */
async function expectCall(a, b) {
  await tile(a.page, 'Bob Babbage').waitFor();
  await tile(b.page, 'Ada Lovelace').waitFor();
  for (const p of [a, b]) await expectPlayingVideos(p.page, 1);
  for (const p of [a, b]) await expectAudio(p.page, 1);
  await until(b.page, 'both connections up', async () => {
    const media = /** @type {any} */ (window).zync.room.media;
    return media.publish.connectionState === 'connected' && media.subscribe.connectionState === 'connected';
  });
}

/**
 * Whether coturn is installed (scripts/test.sh installs it); skips loudly
 * if not.
 * @param {import('node:test').TestContext} t
 */
function hasCoturn(t) {
  if (!spawnSync('turnserver', ['--version']).error) return true;
  console.error('\n*** SKIPPING: this scenario needs coturn (turnserver).\n');
  t.skip('coturn is not installed');
  return false;
}

test('10. over https, someone whose network blocks UDP joins through TURN over TCP', async (t) => {
  if (!requireIsolation(t) || !hasCoturn(t)) return;
  const port = await freePort();
  const turn = await startTurn(port);
  const tls = selfSignedCertificate();
  const server = await startServer({
    ZYNC_HTTP_TLS_CERT: tls.cert,
    ZYNC_HTTP_TLS_KEY: tls.key,
    ZYNC_TURN_URLS: `turn:127.0.0.1:${port}?transport=tcp`,
    ZYNC_TURN_SECRET: SECRET,
  });
  const browser = await launchBrowser();
  try {
    assert.match(server.url, /^https:/);
    const a = await signUp(browser, server.url, 'ada', 'Ada Lovelace');
    const b = await signUp(browser, server.url, 'bob', 'Bob Babbage');
    // Bob's browser may use relay candidates only, as on a network where
    // only TCP to the TURN server gets out.
    await b.page.evaluate(() => localStorage.setItem('zync.relayOnly', '1'));
    const url = await createMeeting(a.page, 'Hotel Wi-Fi');
    await openAndJoin(b.page, url);

    await expectCall(a, b);
    const bobs = await selectedCandidates(b.page);
    assert.ok(bobs.every((c) => c && c.type === 'relay' && c.relayProtocol === 'tcp'),
      `Bob's media must go through TURN over TCP: ${JSON.stringify(bobs)}`);
    const adas = await selectedCandidates(a.page);
    assert.ok(adas.every((c) => c && c.type === 'host'), `Ada connects directly: ${JSON.stringify(adas)}`);
    // The page, its API calls and the WebSocket all went over TLS.
    assert.ok(b.page.url().startsWith('https://'));
    await screenshot(b.page, '10-through-turn');
  } catch (e) {
    console.error(`coturn's log:\n${turn.log()}`);
    throw e;
  } finally {
    await browser.close();
    await server.stop();
    await turn.stop();
    rmSync(tls.dir, { recursive: true, force: true });
  }
});

test('11. after a server restart everyone is back in the meeting, with chat and mute state kept', async (t) => {
  if (!requireIsolation(t)) return;
  let server = await startServer();
  const browser = await launchBrowser();
  try {
    const a = await signUp(browser, server.url, 'ada', 'Ada Lovelace');
    const b = await signUp(browser, server.url, 'bob', 'Bob Babbage');
    const url = await createMeeting(a.page, 'Upgrade night');
    await openAndJoin(b.page, url);
    await expectPlayingVideos(a.page, 1);
    await expectPlayingVideos(b.page, 1);
    await b.page.getByRole('button', { name: 'Microphone' }).click();
    await tile(a.page, 'Bob Babbage').getByRole('img', { name: 'Microphone muted' }).waitFor({ state: 'visible' });
    await a.page.getByRole('button', { name: 'Chat' }).click();
    await a.page.getByRole('textbox', { name: 'Message' }).fill('see you after the upgrade');
    await a.page.getByRole('button', { name: 'Send' }).click();
    await a.page.locator('.chat-message').filter({ hasText: 'see you after the upgrade' }).waitFor();

    // SIGTERM, as systemd sends on `restart`: everyone is told.
    const port = new URL(server.url).port;
    await server.stop({ keepData: true });
    for (const p of [a, b]) {
      await p.page.getByRole('alert').filter({ hasText: 'Zync is restarting' }).waitFor({ timeout: 5000 });
    }

    const started = Date.now();
    server = await startServer({ ZYNC_HTTP_BIND: `127.0.0.1:${port}` }, server.dir);
    // Reconnected (the banner goes and a new media session starts), then
    // video flows again.
    for (const p of [a, b]) {
      await p.page.getByRole('alert').waitFor({ state: 'hidden', timeout: 10_000 });
    }
    await expectPlayingVideos(a.page, 1);
    await expectPlayingVideos(b.page, 1);
    const back = Date.now() - started;
    assert.ok(back < 10_000, `back with video ${back} ms after the restart`);
    // Bob is still muted, for himself and for Ada, and the chat is there.
    await until(b.page, 'microphone still off', () => document.querySelector('[aria-label="Microphone"]')?.getAttribute('aria-pressed') === 'false');
    await tile(a.page, 'Bob Babbage').getByRole('img', { name: 'Microphone muted' }).waitFor({ state: 'visible' });
    await a.page.locator('.chat-message').filter({ hasText: 'see you after the upgrade' }).waitFor();
    await screenshot(a.page, '11-after-restart');
    console.log(`# back with video ${back} ms after the new server started`);
  } finally {
    await browser.close();
    await server.stop();
  }
});

/**
 * Whether this run can filter one browser's traffic (root, nftables and
 * setpriv: scripts/test.sh runs the browser tests so); skips loudly if not.
 * @param {import('node:test').TestContext} t
 */
function canFilterByUser(t) {
  const tools = ['nft', 'setpriv'].filter((tool) => spawnSync(tool, ['--version']).error);
  if (process.getuid?.() === 0 && !tools.length) return true;
  console.error(`\n*** SKIPPING: this scenario needs root and ${tools.join(', ') || 'nothing else'}.\n`);
  t.skip('needs root, nftables and setpriv');
  return false;
}

/** Drops the UDP of the user nobody both ways (in this test's network
 * namespace): every datagram it sends, and every datagram of a flow it
 * sent on (conntrack marks the flow), so the browser of
 * {@link launchBrowserAsNobody} has TCP only, as on a network that blocks
 * UDP or one that just went away. */
function dropNobodysUdp() {
  execFileSync('nft', ['-f', '-'], {
    input: `table inet zync_e2e_no_udp {
      chain out { type filter hook output priority 0; meta skuid ${NOBODY} meta l4proto udp ct mark set 0x2a drop; }
      chain in { type filter hook input priority 0; meta l4proto udp ct mark 0x2a drop; }
    }`,
  });
}

function allowNobodysUdp() {
  spawnSync('nft', ['delete', 'table', 'inet', 'zync_e2e_no_udp']);
}

/** Lets the user nobody send nothing but TCP to port 443, as on a network
 * whose firewall passes only https. */
function allowNobodyOnly443() {
  execFileSync('nft', ['-f', '-'], {
    input: `table inet zync_e2e_only_443 {
      chain out { type filter hook output priority 0; meta skuid ${NOBODY} tcp dport != 443 drop; meta skuid ${NOBODY} meta l4proto != tcp drop; }
    }`,
  });
}

test('12. someone on a network that drops all UDP reaches the SFU over ICE-TCP', async (t) => {
  if (!requireIsolation(t) || !canFilterByUser(t)) return;
  // Bob's browser runs as nobody; Ada's is untouched.
  dropNobodysUdp();
  const server = await startServer();
  const normal = await launchBrowser();
  const blocked = await launchBrowserAsNobody();
  try {
    const a = await signUp(normal, server.url, 'ada', 'Ada Lovelace');
    const b = await signUp(blocked, server.url, 'bob', 'Bob Babbage');
    const url = await createMeeting(a.page, 'Corporate network');
    await openAndJoin(b.page, url);
    await expectCall(a, b);
    const bobs = await selectedCandidates(b.page);
    // Straight to the SFU's passive TCP host candidate (Chromium sees its
    // own end of an active TCP connection as peer-reflexive), no relay.
    assert.ok(bobs.every((c) => c && c.type !== 'relay' && c.remote === 'host' && c.protocol === 'tcp'),
      `Bob's media must reach the SFU's TCP candidate: ${JSON.stringify(bobs)}`);
    const adas = await selectedCandidates(a.page);
    assert.ok(adas.every((c) => c && c.protocol === 'udp'), `Ada's stays on UDP: ${JSON.stringify(adas)}`);
    await screenshot(b.page, '12-ice-tcp');
  } finally {
    await blocked.close();
    await normal.close();
    await server.stop();
    allowNobodysUdp();
  }
});

/**
 * Samples the frames each page has decoded (every 200 ms, for at most
 * 30 s) until `settled()` holds and every page has decoded 10 more frames
 * since; returns the longest time each page's count stood still (a frozen
 * picture), and when `settled()` first held.
 * @param {import('playwright-core').Page[]} pages
 * @param {() => Promise<boolean>} settled
 */
async function watchVideoFreeze(pages, settled) {
  const decoded = (/** @type {import('playwright-core').Page} */ page) => page.evaluate(async () => {
    const s = await /** @type {any} */ (window).zync.stats();
    return s.inbound.filter((/** @type {any} */ i) => i.kind === 'video').reduce((n, /** @type {any} */ i) => n + (i.framesDecoded ?? 0), 0);
  });
  const start = Date.now();
  const last = await Promise.all(pages.map(decoded));
  const changedAt = pages.map(() => start);
  const longest = pages.map(() => 0);
  let settledAt = 0;
  /** @type {number[]} */
  let atSettle = [];
  while (Date.now() - start < 30_000) {
    await new Promise((r) => setTimeout(r, 200));
    const now = Date.now();
    const counts = await Promise.all(pages.map(decoded));
    counts.forEach((n, i) => {
      if (n > last[i]) {
        longest[i] = Math.max(longest[i], now - changedAt[i]);
        changedAt[i] = now;
        last[i] = n;
      }
    });
    if (!settledAt && await settled()) {
      settledAt = Date.now();
      atSettle = [...counts];
    }
    if (settledAt && counts.every((n, i) => n >= atSettle[i] + 10)) {
      return { settled: settledAt, perPage: longest, longest: Math.max(...longest) };
    }
  }
  throw new Error(`video did not resume: settled ${Boolean(settledAt)}, frames ${last.join(', ')}`);
}

test('13. when UDP stops mid-call, ICE restarts over TCP and nobody sees anyone leave', async (t) => {
  if (!requireIsolation(t) || !canFilterByUser(t)) return;
  const server = await startServer();
  const normal = await launchBrowser();
  const moving = await launchBrowserAsNobody();
  try {
    const a = await signUp(normal, server.url, 'ada', 'Ada Lovelace');
    const b = await signUp(moving, server.url, 'bob', 'Bob Babbage');
    const url = await createMeeting(a.page, 'Train Wi-Fi');
    await openAndJoin(b.page, url);
    await expectPlayingVideos(a.page, 1);
    await expectPlayingVideos(b.page, 1);
    const before = await selectedCandidates(b.page);
    assert.ok(before.every((c) => c && c.protocol === 'udp'), `Bob starts on UDP: ${JSON.stringify(before)}`);
    // Bob's tile at Ada's, marked: a user-left and user-joined would
    // replace it.
    await tile(a.page, 'Bob Babbage').evaluate((el) => { el.dataset.marker = 'the same Bob'; });

    // Bob's network stops passing UDP, both ways.
    dropNobodysUdp();
    const dropped = Date.now();
    const freeze = await watchVideoFreeze([a.page, b.page],
      async () => (await selectedCandidates(b.page)).every((c) => c?.connected && c.protocol === 'tcp'));
    console.log(`# both connections on TCP ${freeze.settled - dropped} ms after UDP stopped; `
      + `video froze for ${freeze.longest} ms at most (Ada's view of Bob, Bob's of Ada: ${freeze.perPage.join(', ')} ms)`);
    // Bob's client restarts ICE once both its connections go quiet (1 s)
    // or their checks go unanswered; it must not wait the ~5 s Chromium
    // takes to call a path `disconnected`. The SFU answers on the new TCP
    // pair at its first check and asks for keyframes when media moves or
    // comes back. Chromium checks the new pairs quickly only once the old
    // one has heard nothing for 2.5 s, and moves its own sending a second
    // later: measured 3.8-3.9 s here, 4.0 and 4.9 s in CI runs. The issue's
    // target is 5 s; the bound leaves room for a slow machine, and is
    // still below what waiting for Chromium took (6-8 s).
    assert.ok(freeze.longest < 6_000, `video froze for ${freeze.longest} ms`);
    await expectPlayingVideos(a.page, 1);
    await expectPlayingVideos(b.page, 1);
    assert.equal(await tile(a.page, 'Bob Babbage').getAttribute('data-marker'), 'the same Bob',
      'Ada never saw Bob leave and come back');
    await screenshot(a.page, '13-after-ice-restart');
  } finally {
    await moving.close();
    await normal.close();
    await server.stop();
    allowNobodysUdp();
  }
});

test('14. someone whose network passes only TCP to port 443 joins through TURN over TLS on 443', async (t) => {
  if (!requireIsolation(t) || !canFilterByUser(t) || !hasCoturn(t)) return;
  // zync serves https on 127.0.0.1:443 and coturn TURN/TLS on
  // 127.0.0.2:443 (two hosts, as in a deployment with a TURN name), both
  // with the test's self-signed certificate.
  const tls = selfSignedCertificate();
  const turn = await startTurn(443, { ip: '127.0.0.2', tls });
  const server = await startServer({
    ZYNC_HTTP_BIND: '127.0.0.1:443',
    ZYNC_HTTP_TLS_CERT: tls.cert,
    ZYNC_HTTP_TLS_KEY: tls.key,
    ZYNC_TURN_URLS: 'turns:127.0.0.2:443?transport=tcp',
    ZYNC_TURN_SECRET: SECRET,
  });
  allowNobodyOnly443();
  const normal = await launchBrowser();
  // The TURN server's certificate is self-signed too.
  const restricted = await launchBrowserAsNobody(['--ignore-certificate-errors']);
  try {
    const a = await signUp(normal, server.url, 'ada', 'Ada Lovelace');
    const b = await signUp(restricted, server.url, 'bob', 'Bob Babbage');
    const url = await createMeeting(a.page, 'Locked-down office');
    await openAndJoin(b.page, url);
    await expectCall(a, b);
    // Without any setting on Bob's side: only the relay over TLS got out.
    const bobs = await selectedCandidates(b.page);
    assert.ok(bobs.every((c) => c && c.type === 'relay' && c.relayProtocol === 'tls'),
      `Bob's media must go through TURN over TLS: ${JSON.stringify(bobs)}`);
    await screenshot(b.page, '14-turn-over-tls-443');
  } catch (e) {
    console.error(`coturn's log:\n${turn.log()}`);
    throw e;
  } finally {
    await restricted.close();
    await normal.close();
    await server.stop();
    await turn.stop();
    spawnSync('nft', ['delete', 'table', 'inet', 'zync_e2e_only_443']);
    rmSync(tls.dir, { recursive: true, force: true });
  }
});
