// @ts-check
/**
 * The web client's decisions about a dead network path
 * (`web/js/pathwatch.js`), fed with the stats Chromium gives: no browser
 * needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PathWatch, SILENCE_MS, silentTogether } from '../../../web/js/pathwatch.js';

const LOOK = 500;

/** A connection's selected pair whose counters the test moves. */
function pair(id = 'pair-1') {
  return { id, requestsSent: 0, responsesReceived: 0, bytesReceived: 0 };
}

test('a path that keeps answering its checks is never called dead', () => {
  const watch = new PathWatch();
  const p = pair();
  for (let t = 0; t < 60_000; t += LOOK) {
    // A check every 2.5 s, each answered; one answer lost now and then.
    if (t % 2_500 === 0) p.requestsSent += 1;
    if (t % 2_500 === 0 && t % 25_000 !== 0) p.responsesReceived += 1;
    const v = watch.look({ ...p }, t);
    assert.equal(v.dead, false, `at ${t} ms`);
  }
});

test('three unanswered checks in a row mean the path is dead; an answer brings it back', () => {
  const watch = new PathWatch();
  const p = { ...pair(), requestsSent: 4, responsesReceived: 4 };
  watch.look({ ...p }, 0);
  p.requestsSent += 2;
  assert.equal(watch.look({ ...p }, 500).dead, false);
  p.requestsSent += 1;
  assert.equal(watch.look({ ...p }, 1000).dead, true);
  p.responsesReceived += 1;
  const back = watch.look({ ...p }, 1500);
  assert.equal(back.answered, true);
  assert.equal(back.dead, false);
});

test('a new selected pair that answered counts as recovered', () => {
  const watch = new PathWatch();
  watch.look(pair('udp'), 0);
  const v = watch.look({ ...pair('tcp'), requestsSent: 2, responsesReceived: 1 }, 500);
  assert.equal(v.answered, true);
  assert.equal(v.dead, false);
});

/** Feeds `watch` bytes on every look from `from` to `to` (exclusive). */
function flowing(watch, p, from, to) {
  let v;
  for (let t = from; t < to; t += LOOK) {
    p.bytesReceived += 10_000;
    v = watch.look({ ...p }, t);
  }
  return v;
}

/**
 * One client's two connections (`pairs` are their selected pairs' counters,
 * moved by the test); `look(t)` looks at both at `t` ms and says whether
 * they went silent together.
 */
function client() {
  const watches = { publish: new PathWatch(), subscribe: new PathWatch() };
  const pairs = { publish: pair('a'), subscribe: pair('b') };
  const look = (/** @type {number} */ t) => silentTogether(
    watches.publish.look({ ...pairs.publish }, t),
    watches.subscribe.look({ ...pairs.subscribe }, t),
  );
  return { watches, pairs, look };
}

/** A client whose connections both received steadily for 3 s. */
function steadyClient() {
  const c = client();
  flowing(c.watches.publish, c.pairs.publish, 0, 3_000);
  flowing(c.watches.subscribe, c.pairs.subscribe, 0, 3_000);
  return c;
}

test('both connections going quiet at once is silence; one alone is not', () => {
  const { look } = steadyClient();
  // The network stops just after the look at 2.5 s: nothing more on either.
  let t = 3_000;
  for (; t < 2_500 + SILENCE_MS; t += LOOK) assert.equal(look(t), false, `too soon at ${t} ms`);
  assert.equal(look(t), true, `at ${t} ms`);
});

test('everyone we watch muting, then us muting later, is not silence', () => {
  const { pairs, look } = steadyClient();
  // The subscribe side goes quiet at 3 s; we keep sending (feedback on
  // the publish side) until 10 s, then mute too.
  let t = 3_000;
  for (; t < 10_000; t += LOOK) {
    pairs.publish.bytesReceived += 500;
    assert.equal(look(t), false, `at ${t} ms`);
  }
  for (; t < 20_000; t += LOOK) assert.equal(look(t), false, `at ${t} ms`);
});

test('connections receiving once a second are not steady enough to call silent', () => {
  const { pairs, look } = client();
  let t = 0;
  for (; t < 10_000; t += LOOK) {
    if (t % 1_000 === 0) {
      pairs.publish.bytesReceived += 100;
      pairs.subscribe.bytesReceived += 100;
    }
    assert.equal(look(t), false, `at ${t} ms`);
  }
  // Then nothing at all on either.
  for (; t < 15_000; t += LOOK) assert.equal(look(t), false, `quiet, at ${t} ms`);
});
