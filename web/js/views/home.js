// @ts-check
/**
 * Home: start a meeting, join one by link or code, recent meetings, and the
 * profile (display name and avatar).
 */
import { api, ApiError, compressImage } from '../api.js';
import { h, relativeDay, replace, toast } from '../dom.js';

/**
 * @param {HTMLElement} root
 * @param {{me: import('../api.js').Me, navigate: (path: string) => void, onLogin: (me: import('../api.js').Me) => void, logout: () => void}} app
 */
export function renderHome(root, app) {
  const titleInput = /** @type {HTMLInputElement} */ (h('input', { class: 'input', 'aria-label': 'Meeting title', placeholder: 'Meeting title (optional)', maxlength: 100 }));
  const newButton = /** @type {HTMLButtonElement} */ (h('button', { class: 'btn btn-primary', type: 'submit' }, 'New meeting'));
  const newError = h('div', { class: 'field-error', role: 'alert' });
  const linkInput = /** @type {HTMLInputElement} */ (h('input', { class: 'input', 'aria-label': 'Meeting link or code', placeholder: 'Paste a link or code', autocomplete: 'off', spellcheck: 'false' }));
  const joinError = h('div', { class: 'field-error', role: 'alert' });

  const createForm = h('form', { class: 'stack', onsubmit: create },
    h('div', { class: 'row' }, titleInput, newButton), newError);
  const joinForm = h('form', { class: 'stack', onsubmit: join },
    h('div', { class: 'row' }, linkInput, h('button', { class: 'btn', type: 'submit' }, 'Join')), joinError);

  const list = h('ul', { class: 'meeting-list', 'aria-label': 'Recent meetings' }, h('li', { class: 'empty' }, 'Loading…'));

  replace(root,
    topbar(app),
    h('div', { class: 'home' },
      h('section', { class: 'hero' },
        h('h1', {}, 'Meet face to face, from anywhere.'),
        h('p', {}, 'Start a meeting and share the link. Video, audio, screen sharing and chat, right in the browser.'),
        h('div', { class: 'stack' }, createForm, h('div', { class: 'hint' }, 'or join one'), joinForm)),
      h('div', { class: 'stack' },
        h('section', { class: 'card' }, h('h2', {}, 'Recent meetings'), list),
        profileCard(app))));

  loadMeetings();

  /** @param {SubmitEvent} e */
  async function create(e) {
    e.preventDefault();
    newButton.disabled = true;
    newError.textContent = '';
    try {
      const meeting = await api.createMeeting(titleInput.value.trim());
      app.navigate(`/${meeting.slug}`);
    } catch (err) {
      newButton.disabled = false;
      newError.textContent = err instanceof Error ? err.message : String(err);
    }
  }

  /** @param {SubmitEvent} e */
  function join(e) {
    e.preventDefault();
    const slug = slugFrom(linkInput.value);
    if (!slug) {
      joinError.textContent = 'That does not look like a meeting link or code.';
      linkInput.setAttribute('aria-invalid', 'true');
      return;
    }
    app.navigate(`/${slug}`);
  }

  async function loadMeetings() {
    try {
      const { meetings } = await api.meetings();
      if (!meetings.length) {
        replace(list, h('li', { class: 'empty' }, 'Meetings you start or join appear here.'));
        return;
      }
      replace(list, ...meetings.map((m) => h('li', {},
        h('a', { href: `/${m.slug}`, 'data-link': true },
          m.participant_count > 0 ? h('span', { class: 'live-dot', title: `${m.participant_count} in the meeting now` }) : null,
          h('div', {},
            h('div', { class: 'title' }, m.title || m.slug),
            h('div', { class: 'meta' }, `${relativeDay(m.created_at)} · ${m.participant_count > 0 ? `${m.participant_count} in the meeting now` : `started by ${m.created_by.display_name}`}`))))));
    } catch (err) {
      replace(list, h('li', { class: 'empty' }, `Could not load meetings: ${err instanceof Error ? err.message : err}`));
    }
  }
}

/**
 * The meeting slug in a pasted link or code, if it looks like one.
 * @param {string} text
 */
export function slugFrom(text) {
  const trimmed = text.trim();
  let candidate = trimmed;
  try {
    candidate = new URL(trimmed).pathname.replace(/^\/+|\/+$/g, '');
  } catch { /* not a URL: a bare code */ }
  candidate = candidate.toLowerCase();
  return /^[a-z0-9]+(-[a-z0-9]+)+$/.test(candidate) && candidate.length <= 64 ? candidate : '';
}

/**
 * The bar at the top of signed-in pages.
 * @param {{me: import('../api.js').Me, logout: () => void}} app
 */
export function topbar(app) {
  return h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '/', 'data-link': true }, h('img', { src: '/img/logo.svg', alt: '' }), 'Zync'),
    h('div', { class: 'spacer' }),
    h('div', { class: 'user-chip', title: app.me.username },
      h('img', { class: 'avatar', src: app.me.avatar_url, alt: '' }), app.me.display_name),
    h('button', { class: 'btn btn-ghost', type: 'button', onclick: app.logout }, 'Sign out'));
}

/**
 * Display name and avatar.
 * @param {{me: import('../api.js').Me, onLogin: (me: import('../api.js').Me) => void}} app
 */
function profileCard(app) {
  const avatar = /** @type {HTMLImageElement} */ (h('img', { class: 'avatar', src: app.me.avatar_url, alt: 'Your avatar' }));
  const file = /** @type {HTMLInputElement} */ (h('input', { id: 'avatar-file', type: 'file', accept: 'image/png,image/jpeg,image/webp,image/gif', class: 'visually-hidden', onchange: upload }));
  const bar = h('div');
  const progress = h('div', { class: 'progress', hidden: true, role: 'progressbar', 'aria-label': 'Upload progress', 'aria-valuemin': 0, 'aria-valuemax': 100 }, bar);
  const status = h('div', { class: 'hint', role: 'status' });
  const name = /** @type {HTMLInputElement} */ (h('input', { id: 'profile-name', class: 'input', value: app.me.display_name, maxlength: 64, autocomplete: 'name' }));
  const nameError = h('div', { class: 'field-error', role: 'alert' });

  return h('section', { class: 'card stack', 'aria-labelledby': 'profile-title' },
    h('h2', { id: 'profile-title' }, 'Profile'),
    h('div', { class: 'profile' }, avatar,
      h('div', { class: 'stack' },
        h('label', { class: 'btn', for: 'avatar-file', role: 'button', tabindex: 0, onkeydown: (/** @type {KeyboardEvent} */ e) => (e.key === 'Enter' || e.key === ' ') && file.click() }, 'Change avatar'),
        file, progress, status)),
    h('form', { class: 'stack', onsubmit: rename },
      h('div', { class: 'field' }, h('label', { for: 'profile-name' }, 'Display name'),
        h('div', { class: 'row' }, name, h('button', { class: 'btn', type: 'submit' }, 'Save')), nameError)));

  async function upload() {
    const chosen = file.files?.[0];
    if (!chosen) return;
    status.textContent = 'Preparing…';
    progress.hidden = false;
    bar.style.width = '0%';
    try {
      const blob = await compressImage(chosen);
      status.textContent = `Uploading ${Math.round(blob.size / 1024)} KB…`;
      const me = await api.uploadAvatar(blob, (fraction) => {
        bar.style.width = `${Math.round(fraction * 100)}%`;
        progress.setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
      });
      avatar.src = me.avatar_url;
      app.onLogin(me);
      status.textContent = 'Avatar updated.';
    } catch (err) {
      status.textContent = err instanceof ApiError && err.status === 413
        ? 'That image is too large.'
        : `Upload failed: ${err instanceof Error ? err.message : err}`;
    } finally {
      progress.hidden = true;
      file.value = '';
    }
  }

  /** @param {SubmitEvent} e */
  async function rename(e) {
    e.preventDefault();
    nameError.textContent = '';
    if (!name.value.trim()) {
      nameError.textContent = 'Enter the name others will see.';
      return;
    }
    try {
      const me = await api.rename(name.value.trim());
      app.onLogin(me);
      toast('Name saved');
    } catch (err) {
      nameError.textContent = err instanceof Error ? err.message : String(err);
    }
  }
}
