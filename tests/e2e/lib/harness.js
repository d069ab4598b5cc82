// @ts-check
/**
 * Shared pieces of the end-to-end tests: a real `zync` process on
 * loopback, Debian's Chromium with fake devices, and the steps a person
 * takes in the UI, found by role and accessible name.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, '../../..');
/** Screenshots land here (a CI artifact). */
export const shots = join(repo, 'target', 'e2e');

/** Chromium flags for WebRTC with fake devices (see shared/TESTING.md). */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];

/**
 * Whether this process runs in a network namespace with only loopback, as
 * CI runs it; elsewhere Chromium would offer the machine's other addresses.
 */
export function onlyLoopback() {
  const lines = readFileSync('/proc/self/net/dev', 'utf8').split('\n').slice(2).filter((l) => l.trim());
  return lines.every((l) => l.trim().startsWith('lo:'));
}

/** Skips loudly unless in a loopback-only namespace (or told otherwise). */
export function requireIsolation(t) {
  if (onlyLoopback() || process.env.ZYNC_E2E_ANY_NETWORK) return true;
  console.error('\n*** SKIPPING browser tests: not in a loopback-only network namespace.\n*** Run scripts/test.sh (it uses unshare -n), or set ZYNC_E2E_ANY_NETWORK=1.\n');
  t.skip('not in a loopback-only network namespace');
  return false;
}

/** Starts `zync` on 127.0.0.1 with a fresh SQLite database (or the one
 * in `dataDir`, from an earlier server), with `env` (ZYNC_* settings) on
 * top. Its log is appended to the file `ZYNC_E2E_SERVER_LOG` names, if set.
 * @param {Record<string, string>} [env]
 * @param {string} [dataDir] */
export async function startServer(env = {}, dataDir = undefined) {
  const bin = process.env.ZYNC_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repo, 'target'), 'debug', 'zync');
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'zync-e2e-'));
  const child = spawn(bin, [], {
    cwd: dir,
    env: {
      ...process.env,
      ZYNC_HTTP_BIND: '127.0.0.1:0',
      ZYNC_DATABASE_URL: `sqlite://${dir}/zync.db`,
      ZYNC_SFU_BIND_IP: '127.0.0.1',
      ZYNC_SFU_UDP_PORT_MIN: '0',
      ZYNC_SFU_UDP_PORT_MAX: '0',
      ZYNC_SFU_TCP_PORT_MIN: '0',
      ZYNC_SFU_TCP_PORT_MAX: '0',
      ZYNC_LOG_LEVEL: process.env.ZYNC_LOG_LEVEL ?? 'warn,zync=info',
      RUST_LOG: '',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (process.env.ZYNC_E2E_SERVER_LOG) {
    const log = process.env.ZYNC_E2E_SERVER_LOG;
    child.stdout.on('data', (chunk) => appendFileSync(log, chunk));
  }
  const url = await new Promise((resolvePromise, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`zync did not start:\n${out}`)), 20_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = out.match(/listening on (https?:\/\/127\.0\.0\.1:\d+)/);
      if (match) {
        clearTimeout(timer);
        resolvePromise(match[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`zync exited with ${code}:\n${out}`)));
  });
  child.stdout.resume();
  return {
    url: /** @type {string} */ (url),
    dir,
    /** Stops with SIGTERM, as an upgrade would; `keepData` leaves the
     * database for the next server. */
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      if (!keepData) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Launches one headless Chromium (participants are contexts in it). */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/** The user id a browser of {@link launchBrowserAsNobody} runs as. */
export const NOBODY = 65534;

/**
 * Launches Chromium as the user `nobody` (needs root), so a test can
 * filter that browser's traffic by user (nftables `meta skuid`) while
 * another browser's goes through. A wrapper hands Chromium its profile
 * directory (which Playwright creates as root) and a home of its own.
 * @param {string[]} [extraArgs] more Chromium switches
 */
export async function launchBrowserAsNobody(extraArgs = []) {
  const dir = mkdtempSync(join(tmpdir(), 'zync-e2e-nobody-'));
  chmodSync(dir, 0o755);
  const home = join(dir, 'home');
  mkdirSync(home);
  chownSync(home, NOBODY, NOBODY);
  const wrapper = join(dir, 'chromium');
  const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  writeFileSync(wrapper, `#!/bin/sh
for arg in "$@"; do
  case "$arg" in --user-data-dir=*) chown -R ${NOBODY}:${NOBODY} "\${arg#--user-data-dir=}" ;; esac
done
export HOME='${home}'
exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups '${chromiumPath}' "$@"
`);
  chmodSync(wrapper, 0o755);
  const browser = await chromium.launch({ executablePath: wrapper, headless: true, args: [...CHROMIUM_ARGS, ...extraArgs] });
  browser.on('disconnected', () => rmSync(dir, { recursive: true, force: true }));
  return browser;
}

/**
 * A new person: their own context (cookies), signed up through the UI.
 * @param {import('playwright-core').Browser} browser
 * @param {string} base
 * @param {string} username
 * @param {string} displayName
 * @param {{width: number, height: number}} [viewport]
 */
export async function signUp(browser, base, username, displayName, viewport = { width: 1280, height: 760 }) {
  // The certificate of an https test server is self-signed.
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${username}] page error:`, e.message));
  await page.goto(`${base}/signup`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Display name').fill(displayName);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('button', { name: 'New meeting' }).waitFor();
  return { context, page, displayName };
}

/**
 * Creates a meeting from the home page; returns its URL once in the room.
 * @param {import('playwright-core').Page} page
 * @param {string} title
 */
export async function createMeeting(page, title) {
  await page.getByLabel('Meeting title').fill(title);
  await page.getByRole('button', { name: 'New meeting' }).click();
  await joinFromPrejoin(page);
  return page.url();
}

/**
 * Opens a meeting link and joins.
 * @param {import('playwright-core').Page} page
 * @param {string} url
 */
export async function openAndJoin(page, url) {
  await page.goto(url);
  await joinFromPrejoin(page);
}

/** @param {import('playwright-core').Page} page */
async function joinFromPrejoin(page) {
  // The button is enabled once the camera and microphone answered; click
  // waits for that.
  await page.getByRole('button', { name: 'Join now' }).click();
  await page.getByRole('button', { name: 'Leave' }).waitFor();
}

/**
 * The tile of `name` (a group labelled with their name).
 * @param {import('playwright-core').Page} page
 * @param {string} name
 */
export function tile(page, name) {
  return page.getByRole('group', { name, exact: true });
}

/**
 * Waits until `predicate` (evaluated in the page) holds.
 * @param {import('playwright-core').Page} page
 * @param {string} what
 * @param {(arg: any) => any} predicate
 * @param {any} [arg]
 * @param {number} [timeout]
 */
export async function until(page, what, predicate, arg, timeout = 20_000) {
  // Polls with evaluate (which awaits async predicates, unlike a truthy
  // Promise in waitForFunction).
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await page.evaluate(predicate, arg)) return;
    } catch (e) {
      last = e;
    }
    await page.waitForTimeout(250);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
}

/**
 * Checks that the page really plays `count` remote videos: decoded frames
 * increase over a second (getStats) and each remote <video> advances. A
 * picture may stand still for a moment as a call starts (a layer switch
 * waits for its keyframe), so three windows are tried before failing.
 * Returns the per-track samples.
 * @param {import('playwright-core').Page} page
 * @param {number} count
 */
export async function expectPlayingVideos(page, count) {
  await until(page, `${count} remote video tracks decoding`, async (n) => {
    const s = await window.zync?.stats();
    return s && s.inbound.filter((i) => i.kind === 'video' && i.framesDecoded > 0).length >= n;
  }, count);
  const video = (s) => s.inbound.filter((i) => i.kind === 'video');
  const currentTimes = () => page.evaluate(() => [...document.querySelectorAll('.tile:not(.self) video')].filter((v) => v.srcObject).map((v) => v.currentTime));
  let failure = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const first = await page.evaluate(() => window.zync.stats());
    const times = await currentTimes();
    await page.waitForTimeout(1200);
    const second = await page.evaluate(() => window.zync.stats());
    const later = await currentTimes();
    const advancing = video(second).filter((b) => {
      const a = video(first).find((x) => x.mid === b.mid);
      return a && b.framesDecoded > a.framesDecoded;
    });
    const moving = later.filter((t, i) => times[i] !== undefined && t > times[i]).length;
    if (advancing.length >= count && moving >= count) return video(second);
    failure = advancing.length < count
      ? `expected ${count} videos decoding, got ${advancing.length}: ${JSON.stringify(video(first))} → ${JSON.stringify(video(second))}`
      : `expected ${count} <video> elements advancing, got ${moving} (${times} → ${later})`;
  }
  throw new Error(failure);
}

/**
 * Checks remote audio arrives: packets received increase.
 * @param {import('playwright-core').Page} page
 * @param {number} count
 */
export async function expectAudio(page, count) {
  const audio = (s) => s.inbound.filter((i) => i.kind === 'audio');
  const first = audio(await page.evaluate(() => window.zync.stats()));
  await page.waitForTimeout(1000);
  const second = audio(await page.evaluate(() => window.zync.stats()));
  const flowing = second.filter((b) => {
    const a = first.find((x) => x.mid === b.mid);
    return a && b.packetsReceived > a.packetsReceived;
  });
  if (flowing.length < count) throw new Error(`expected ${count} audio tracks flowing, got ${JSON.stringify(second)}`);
}

/**
 * Saves a screenshot under target/e2e/.
 * @param {import('playwright-core').Page} page
 * @param {string} name
 */
export async function screenshot(page, name) {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`) });
}
