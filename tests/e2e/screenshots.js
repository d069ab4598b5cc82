// @ts-check
/**
 * Regenerates the README's screenshots (docs/home.png, docs/room.png,
 * docs/room-phone.png) from a real run. Run inside a loopback-only network
 * namespace, like the tests:
 *   unshare -n bash -c 'ip link set lo up; node tests/e2e/screenshots.js'
 */
import { join } from 'node:path';
import { createMeeting, launchBrowser, openAndJoin, repo, signUp, startServer, expectPlayingVideos } from './lib/harness.js';

const server = await startServer();
const browser = await launchBrowser();
try {
  const a = await signUp(browser, server.url, 'ada', 'Ada Lovelace');
  const b = await signUp(browser, server.url, 'grace', 'Grace Hopper');
  const c = await signUp(browser, server.url, 'alan', 'Alan Turing', { width: 390, height: 844 });
  const url = await createMeeting(a.page, 'Weekly planning');
  await openAndJoin(b.page, url);
  await openAndJoin(c.page, url);
  await expectPlayingVideos(a.page, 2);
  await b.page.getByRole('button', { name: 'Chat' }).click();
  await b.page.getByRole('textbox', { name: 'Message' }).fill('Morning! Slides are in the shared folder.');
  await b.page.getByRole('button', { name: 'Send' }).click();
  await a.page.getByRole('button', { name: 'Chat' }).click();
  await a.page.locator('.chat-message').first().waitFor();
  await a.page.waitForTimeout(800);
  await a.page.screenshot({ path: join(repo, 'docs', 'room.png') });
  await c.page.waitForTimeout(500);
  await c.page.screenshot({ path: join(repo, 'docs', 'room-phone.png') });
  await a.page.getByRole('button', { name: 'Leave' }).click();
  await a.page.getByRole('link', { name: 'Return to home' }).click();
  await a.page.getByRole('list', { name: 'Recent meetings' }).getByRole('link').first().waitFor();
  await a.page.screenshot({ path: join(repo, 'docs', 'home.png') });
} finally {
  await browser.close();
  await server.stop();
}
