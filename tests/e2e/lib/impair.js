// @ts-check
/**
 * A lossy network for browser tests: `zync-impair` (tests/src/impair.rs),
 * a UDP relay that drops and delays datagrams both ways, since this kernel
 * has no netem; and what a page received over a window (freezes, concealed
 * audio, NACKs), from getStats.
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { dirname, join } from 'node:path';
import {
  createMeeting, expectAudio, expectPlayingVideos, openAndJoin, repo, signUp, startServer, tile,
} from './harness.js';

/** A free UDP port on loopback. @returns {Promise<number>} */
export function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

/**
 * Starts `zync-impair` (built next to `zync`) with `routes`
 * (`LISTEN=UPSTREAM` each) and `args` (e.g. `--loss 5`). Resolves once it
 * listens.
 * @param {string[]} routes
 * @param {string[]} args
 */
export async function startRelay(routes, args) {
  const bin = join(dirname(process.env.ZYNC_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repo, 'target'), 'debug', 'zync')), 'zync-impair');
  const child = spawn(bin, [...routes.flatMap((r) => ['--forward', r]), '--seconds', '600', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`zync-impair did not start: ${out}`)), 10_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (out.includes('relaying')) { clearTimeout(timer); resolve(undefined); }
    });
    child.once('error', (e) => reject(new Error(`cannot run ${bin} (built by cargo test --workspace --no-run): ${e.message}`)));
    child.once('exit', (code) => reject(new Error(`zync-impair exited with ${code}: ${out}`)));
  });
  return {
    /** Stops it; returns what it relayed (datagrams received, forwarded
     * and dropped each way). */
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      const last = out.trim().split('\n').pop() ?? '';
      return last.startsWith('{') ? JSON.parse(last) : {};
    },
  };
}

/**
 * A zync whose media goes through `zync-impair` with `args` (e.g.
 * `['--loss', '5']`): the SFU, one worker, advertises 127.0.0.2 on a free
 * port and the relay listens there; media only over UDP.
 * @param {string[]} args
 */
export async function impairedServer(args) {
  const port = await freeUdpPort();
  const relay = await startRelay([`127.0.0.2:${port}=127.0.0.1:${port}`], args);
  try {
    const server = await startServer({
      ZYNC_SFU_PUBLIC_IP: '127.0.0.2',
      ZYNC_SFU_UDP_PORT_MIN: String(port),
      ZYNC_SFU_UDP_PORT_MAX: String(port),
      ZYNC_SFU_WORKERS: '1',
      ZYNC_SFU_ICE_TCP: 'false',
    });
    return { server, relay };
  } catch (e) {
    await relay.stop();
    throw e;
  }
}

/**
 * Ada and Bob sign up, meet, and see and hear each other.
 * @param {import('playwright-core').Browser} browser
 * @param {string} base
 */
export async function callOfTwo(browser, base) {
  const a = await signUp(browser, base, 'ada', 'Ada Lovelace');
  const b = await signUp(browser, base, 'bob', 'Bob Babbage');
  const url = await createMeeting(a.page, 'Call');
  await openAndJoin(b.page, url);
  await tile(a.page, 'Bob Babbage').waitFor();
  await tile(b.page, 'Ada Lovelace').waitFor();
  for (const p of [a, b]) await expectPlayingVideos(p.page, 1);
  for (const p of [a, b]) await expectAudio(p.page, 1);
  return [a, b];
}

/**
 * Per incoming track of `pc` (a page global's name), the counters the web
 * client's own `stats()` reads (`web/js/inbound.js`). Runs in the page,
 * which is on Zync's origin.
 * @param {string} name
 */
function inboundOf(name) {
  return (async () => {
    const { inboundStats } = await import('/js/inbound.js');
    return inboundStats(await /** @type {any} */ (window)[name].getStats());
  })();
}

/**
 * What a page received over `seconds`, per incoming track: packets, NACKs
 * sent, frames decoded per second, the share of the time video was frozen,
 * the share of audio samples concealed, the jitter buffer's mean delay.
 * `pc` names a page global holding an RTCPeerConnection; without it, the
 * Zync client's subscribe connection.
 * @param {import('playwright-core').Page} page
 * @param {number} seconds
 * @param {string} [pc]
 */
export async function measure(page, seconds, pc) {
  const read = () => (pc
    ? page.evaluate(inboundOf, pc)
    : page.evaluate(() => window.zync.stats()).then((s) => s.inbound));
  const first = await read();
  await page.waitForTimeout(seconds * 1000);
  const second = await read();
  return second.map((/** @type {any} */ b) => {
    const a = first.find((/** @type {any} */ x) => x.mid === b.mid) ?? {};
    const delta = (/** @type {string} */ key) => (b[key] ?? 0) - (a[key] ?? 0);
    const samples = delta('totalSamplesReceived');
    return {
      kind: b.kind,
      codec: b.codec,
      packetsReceived: delta('packetsReceived'),
      packetsLost: delta('packetsLost'),
      bytesPerPacket: delta('packetsReceived') > 0 ? Math.round(delta('bytesReceived') / delta('packetsReceived')) : 0,
      nacks: delta('nackCount'),
      fps: delta('framesDecoded') / seconds,
      frozenShare: delta('totalFreezesDuration') / seconds,
      freezes: delta('freezeCount'),
      concealedShare: samples > 0 ? delta('concealedSamples') / samples : 0,
      jitterBufferMs: delta('jitterBufferEmittedCount') > 0
        ? (delta('jitterBufferDelay') / delta('jitterBufferEmittedCount')) * 1000 : 0,
      height: b.frameHeight,
    };
  });
}
