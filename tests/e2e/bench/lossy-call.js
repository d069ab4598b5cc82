// @ts-check
/**
 * Two Chromium browsers in a call on a lossy network, through Zync and
 * peer to peer, one after the other in the same run and through the same
 * relay (`zync-impair`): what each receiver saw (video frames per second,
 * share of the time frozen, audio concealed, NACKs sent).
 *
 * Both paths cross the relay twice each way, so both lose about the same
 * share end to end: through Zync, browser → relay → SFU → relay →
 * browser; peer to peer, browser → relay → relay → browser (the second
 * browser's candidates are replaced by the relay's address).
 *
 * Run inside a loopback-only namespace, after `cargo build -p zync -p zync-tests`:
 *
 *   unshare -n bash -c 'ip link set lo up && node tests/e2e/bench/lossy-call.js --loss 5 --delay-ms 40 --seconds 60'
 */
import { parseArgs } from 'node:util';
import { launchBrowser, onlyLoopback, startServer } from '../lib/harness.js';
import { callOfTwo, freeUdpPort, impairedServer, measure, startRelay } from '../lib/impair.js';

const { values: opts } = parseArgs({
  options: {
    loss: { type: 'string', default: '5' },
    'delay-ms': { type: 'string', default: '40' },
    'jitter-ms': { type: 'string', default: '10' },
    seconds: { type: 'string', default: '60' },
    rounds: { type: 'string', default: '1' },
  },
});
const impairment = ['--loss', opts.loss, '--delay-ms', opts['delay-ms'], '--jitter-ms', opts['jitter-ms']];
const seconds = Number(opts.seconds);

/**
 * A call through Zync: two people in a meeting, media through the relay.
 * @param {import('playwright-core').Browser} browser
 */
async function throughZync(browser) {
  const { server, relay } = await impairedServer(impairment);
  try {
    const [a, b] = await callOfTwo(browser, server.url);
    const views = await Promise.all([measure(a.page, seconds), measure(b.page, seconds)]);
    await Promise.all([a.context.close(), b.context.close()]);
    return { views, relay: await relay.stop(), sfu: await repairCounters(server.url) };
  } finally {
    await server.stop();
    await relay.stop();
  }
}

/**
 * The SFU's NACK and keyframe counters from `/metrics`, summed over workers.
 * @param {string} base
 */
async function repairCounters(base) {
  const text = await (await fetch(`${base}/metrics`)).text();
  /** @type {Record<string, number>} */
  const out = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^zync_sfu_(nacks|rtp_resent|resends_\w+|keyframe_requests|layer_switch_keyframe_requests)_total(?:\{[^}]*\})? (\d+)/);
    if (m) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  }
  return out;
}

/**
 * Sets up a peer connection in `page` (global `pc`) sending the fake
 * camera and microphone as the Zync client asks for them, and playing
 * what arrives.
 * @param {import('playwright-core').Page} page
 */
async function peer(page) {
  await page.evaluate(async () => {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true },
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
    });
    const pc = new RTCPeerConnection();
    /** @type {any} */ (window).pc = pc;
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    pc.ontrack = (e) => {
      const el = document.createElement(e.track.kind === 'video' ? 'video' : 'audio');
      el.autoplay = true;
      el.srcObject = new MediaStream([e.track]);
      document.body.append(el);
    };
  });
}

/**
 * Makes `page`'s offer or answer (after `remote`, if given) and returns it
 * once every candidate is gathered.
 * @param {import('playwright-core').Page} page
 * @param {string|null} remote the offer to answer
 */
function describe(page, remote) {
  return page.evaluate(async (offer) => {
    const pc = /** @type {RTCPeerConnection} */ (/** @type {any} */ (window).pc);
    if (offer) await pc.setRemoteDescription({ type: 'offer', sdp: offer });
    await pc.setLocalDescription();
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((resolve) => {
        pc.addEventListener('icegatheringstatechange', () => {
          if (pc.iceGatheringState === 'complete') resolve(undefined);
        });
      });
    }
    return /** @type {RTCSessionDescription} */ (pc.localDescription).sdp;
  }, remote);
}

/** @param {string} sdp */
const withoutCandidates = (sdp) => sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate') && l !== 'a=end-of-candidates').join('\r\n');

/**
 * A call peer to peer: Ada's browser knows Bob only by the relay's address,
 * and Bob learns Ada's from her checks (peer-reflexive), so every packet
 * crosses the relay's two routes each way.
 * @param {import('playwright-core').Browser} browser
 */
async function peerToPeer(browser) {
  const server = await startServer();
  const pages = [];
  for (let i = 0; i < 2; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
    const page = await context.newPage();
    // Any page of this origin: a secure context for getUserMedia.
    await page.goto(`${server.url}/login`);
    await peer(page);
    pages.push({ context, page });
  }
  const [a, b] = pages;
  const offer = await describe(a.page, null);
  const answer = await describe(b.page, withoutCandidates(offer));
  const bobPort = answer.match(/a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host/)?.[1];
  if (!bobPort) throw new Error(`no loopback candidate in Bob's answer:\n${answer}`);
  const [first, second] = [await freeUdpPort(), await freeUdpPort()];
  const relay = await startRelay([
    `127.0.0.2:${first}=127.0.0.2:${second}`,
    `127.0.0.2:${second}=127.0.0.1:${bobPort}`,
  ], impairment);
  try {
    await a.page.evaluate(async ({ sdp, port }) => {
      const pc = /** @type {RTCPeerConnection} */ (/** @type {any} */ (window).pc);
      await pc.setRemoteDescription({ type: 'answer', sdp });
      await pc.addIceCandidate({ candidate: `candidate:1 1 udp 2122260223 127.0.0.2 ${port} typ host`, sdpMLineIndex: 0 });
    }, { sdp: withoutCandidates(answer), port: first });
    for (const { page } of pages) {
      await page.waitForFunction(async () => {
        const report = await /** @type {any} */ (window).pc.getStats();
        let decoding = false;
        report.forEach((/** @type {any} */ s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) decoding = true;
        });
        return decoding;
      }, undefined, { timeout: 30_000, polling: 500 });
    }
    const views = await Promise.all([measure(a.page, seconds, 'pc'), measure(b.page, seconds, 'pc')]);
    return { views, relay: await relay.stop() };
  } finally {
    for (const { context } of pages) await context.close();
    await relay.stop();
    await server.stop();
  }
}

/**
 * One line per receiver and kind.
 * @param {string} path
 * @param {{views: any[][], relay: any, sfu?: Record<string, number>}} call
 */
function report(path, call) {
  const lost = (/** @type {any} */ d) => (d.received ? `${((d.dropped / d.received) * 100).toFixed(1)} %` : '-');
  console.log(`\n${path}: relay dropped ${lost(call.relay.up ?? {})} up, ${lost(call.relay.down ?? {})} down (per route)`);
  const order = (/** @type {any} */ d) => `${d.rtp_late ?? 0} late, ${d.rtp_skipped ?? 0} skipped`;
  console.log(`  RTP as it reached the relay: from the browsers ${order(call.relay.up ?? {})}; towards them ${order(call.relay.down ?? {})}`);
  if (call.sfu) console.log(`  SFU: ${Object.entries(call.sfu).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  call.views.forEach((tracks, i) => {
    const video = tracks.find((x) => x.kind === 'video');
    const audio = tracks.find((x) => x.kind === 'audio');
    console.log(`  receiver ${i + 1}: video ${video?.fps.toFixed(1)} fps, frozen ${((video?.frozenShare ?? 0) * 100).toFixed(2)} % (${video?.freezes} freezes), ${Math.round((video?.nacks ?? 0) * 60 / seconds)} NACKs/min, jitter buffer ${Math.round(video?.jitterBufferMs ?? 0)} ms, ${video?.height}p; audio ${audio?.codec} (${audio?.bytesPerPacket} B/packet) concealed ${((audio?.concealedShare ?? 0) * 100).toFixed(2)} %, lost ${audio?.packetsLost} of ${(audio?.packetsReceived ?? 0) + (audio?.packetsLost ?? 0)}`);
  });
}

if (!onlyLoopback()) {
  console.error('Run this inside a loopback-only network namespace (see the header).');
  process.exit(2);
}
const browser = await launchBrowser();
try {
  console.log(`${seconds} s per call, relay: ${impairment.join(' ')} per route`);
  for (let round = 1; round <= Number(opts.rounds); round++) {
    console.log(`\n# round ${round}`);
    report('through Zync', await throughZync(browser));
    report('peer to peer', await peerToPeer(browser));
  }
} finally {
  await browser.close();
}
