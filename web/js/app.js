// @ts-check
/**
 * Entry point: routes between sign in / sign up, home, and meetings.
 *
 * - `/login`, `/signup`: accounts
 * - `/`: home
 * - `/{slug}`: a meeting (pre-join, room, end screen)
 */
import { api } from './api.js';
import { h, replace } from './dom.js';
import { renderAuth } from './views/auth.js';
import { renderHome, topbar } from './views/home.js';
import { renderPrejoin } from './views/prejoin.js';
import { renderRoom } from './views/room.js';

const root = /** @type {HTMLElement} */ (document.getElementById('app'));
/** @type {import('./api.js').Me|null} */
let me = null;
/** Tears down the current screen (stops cameras, closes connections). */
let cleanup = () => {};
/** Device choices carry over a rejoin. @type {import('./views/prejoin.js').JoinChoice|null} */
let lastChoice = null;

/** @param {string} path */
function navigate(path) {
  if (path !== location.pathname + location.search) history.pushState({}, '', path);
  route();
}

const app = {
  navigate,
  get me() { return /** @type {import('./api.js').Me} */ (me); },
  get next() { return new URLSearchParams(location.search).get('next') || '/'; },
  /** @param {import('./api.js').Me} user */
  onLogin(user) { me = user; },
  async logout() {
    await api.logout().catch(() => {});
    me = null;
    navigate('/login');
  },
};

async function route() {
  cleanup();
  cleanup = () => {};
  const path = location.pathname;
  if (me === null) {
    try {
      me = await api.me();
    } catch (e) {
      return replace(root, h('div', { class: 'center-screen' }, h('div', { class: 'form-error', role: 'alert' }, e instanceof Error ? e.message : String(e))));
    }
  }
  if (path === '/login' || path === '/signup') {
    if (me) return navigate(app.next);
    document.title = path === '/login' ? 'Sign in · Zync' : 'Sign up · Zync';
    return renderAuth(root, path === '/login' ? 'login' : 'signup', app);
  }
  if (!me) return navigate(`/login?next=${encodeURIComponent(path)}`);
  if (path === '/') {
    document.title = 'Zync';
    return renderHome(root, app);
  }
  return meeting(path.slice(1));
}

/** @param {string} slug */
async function meeting(slug) {
  replace(root, h('div', { class: 'center-screen' }, h('div', { class: 'spinner', 'aria-label': 'Loading' })));
  let info;
  try {
    info = await api.meeting(slug);
  } catch (e) {
    document.title = 'Meeting not found · Zync';
    return replace(root, topbar(app), h('div', { class: 'ended' }, h('div', {},
      h('h1', {}, 'Meeting not found'),
      h('p', {}, 'Check the link: it may be mistyped, or the meeting may not exist.'),
      h('a', { class: 'btn btn-primary', href: '/', 'data-link': true }, 'Return to home'))));
  }
  document.title = `${info.title || info.slug} · Zync`;
  const meetingInfo = info;
  cleanup = renderPrejoin(root, app, meetingInfo, lastChoice, (choice) => {
    lastChoice = { ...choice, stream: null };
    cleanup = renderRoom(root, app, meetingInfo, choice, (reason, message) => {
      cleanup = () => {};
      ended(meetingInfo, reason, message);
    });
  });
}

const ENDED_HEADINGS = {
  left: 'You left the meeting',
  ended: 'The meeting is over for you',
  error: 'You are not in the meeting',
};

/**
 * @param {import('./api.js').Meeting} info
 * @param {'left'|'ended'|'error'} reason
 * @param {string} [message]
 */
function ended(info, reason, message) {
  document.title = 'Meeting ended · Zync';
  replace(root, h('div', { class: 'ended' }, h('div', {},
    h('h1', {}, ENDED_HEADINGS[reason]),
    h('p', {}, reason === 'left' ? (info.title || info.slug) : message || 'Something went wrong.'),
    h('div', { class: 'row centered-row' },
      h('button', { class: 'btn btn-primary', type: 'button', onclick: () => meeting(info.slug) }, 'Rejoin'),
      h('a', { class: 'btn', href: '/', 'data-link': true }, 'Return to home')))));
}

document.addEventListener('click', (e) => {
  const link = /** @type {HTMLElement} */ (e.target)?.closest?.('a[data-link]');
  if (!link || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  e.preventDefault();
  navigate(/** @type {HTMLAnchorElement} */ (link).getAttribute('href') ?? '/');
});
window.addEventListener('popstate', route);
route();
