// @ts-check
/**
 * Sign up and sign in, with inline validation and the server's errors shown
 * next to the field they concern.
 */
import { api, ApiError } from '../api.js';
import { h, replace } from '../dom.js';

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$/;

/**
 * @param {HTMLElement} root
 * @param {'login'|'signup'} mode
 * @param {{navigate: (path: string) => void, next: string, onLogin: (me: import('../api.js').Me) => void}} app
 */
export function renderAuth(root, mode, app) {
  const signup = mode === 'signup';
  /** @type {Record<string, {input: HTMLInputElement, error: HTMLElement}>} */
  const fields = {};
  const field = (/** @type {string} */ name, /** @type {string} */ label, /** @type {Record<string, any>} */ attrs) => {
    const id = `field-${name}`;
    const input = /** @type {HTMLInputElement} */ (h('input', { id, name, class: 'input', 'aria-describedby': `${id}-error`, ...attrs }));
    const error = h('div', { id: `${id}-error`, class: 'field-error', role: 'alert' });
    fields[name] = { input, error };
    return h('div', { class: 'field' }, h('label', { for: id }, label), input, error);
  };
  const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const submit = /** @type {HTMLButtonElement} */ (h('button', { class: 'btn btn-primary', type: 'submit' }, signup ? 'Sign up' : 'Sign in'));

  const form = h('form', { class: 'auth-card', novalidate: true, onsubmit: onSubmit },
    h('a', { class: 'brand', href: '/', 'data-link': true }, h('img', { src: '/img/logo.svg', alt: '' }), 'Zync'),
    h('h1', {}, signup ? 'Create your account' : 'Welcome back'),
    formError,
    field('username', 'Username', { autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', required: true, autofocus: true }),
    signup ? field('display_name', 'Display name', { autocomplete: 'name', required: true, maxlength: 64 }) : null,
    field('password', 'Password', { type: 'password', autocomplete: signup ? 'new-password' : 'current-password', required: true }),
    signup ? h('p', { class: 'hint' }, 'At least 8 characters.') : null,
    submit,
    h('p', { class: 'auth-switch' },
      signup ? 'Already have an account? ' : 'New to Zync? ',
      h('a', { href: `${signup ? '/login' : '/signup'}${app.next !== '/' ? `?next=${encodeURIComponent(app.next)}` : ''}`, 'data-link': true }, signup ? 'Sign in' : 'Create an account')));

  for (const { input } of Object.values(fields)) {
    input.addEventListener('input', () => setError(input.name, ''));
    input.addEventListener('blur', () => input.value && validate(input.name));
  }
  replace(root, h('div', { class: 'auth' }, form));
  fields.username.input.focus();

  /** @param {string} name @param {string} message */
  function setError(name, message) {
    const f = fields[name];
    if (!f) return;
    f.error.textContent = message;
    f.input.setAttribute('aria-invalid', message ? 'true' : 'false');
  }

  /** @param {string} name @returns {boolean} */
  function validate(name) {
    const value = fields[name].input.value;
    let message = '';
    if (name === 'username') {
      if (!value.trim()) message = 'Enter a username.';
      else if (signup && !USERNAME.test(value.trim())) message = 'Use 3–32 letters, digits, dots, dashes or underscores, starting with a letter or digit.';
    } else if (name === 'display_name') {
      if (!value.trim()) message = 'Enter the name others will see.';
    } else if (name === 'password') {
      if (!value) message = 'Enter a password.';
      else if (signup && [...value].length < 8) message = 'Use at least 8 characters.';
    }
    setError(name, message);
    return !message;
  }

  /** @param {SubmitEvent} e */
  async function onSubmit(e) {
    e.preventDefault();
    formError.hidden = true;
    const valid = Object.keys(fields).map(validate).every(Boolean);
    if (!valid) {
      const first = Object.values(fields).find((f) => f.input.getAttribute('aria-invalid') === 'true');
      first?.input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = signup ? 'Creating account…' : 'Signing in…';
    try {
      const username = fields.username.input.value.trim();
      const password = fields.password.input.value;
      const me = signup
        ? await api.register({ username, password, display_name: fields.display_name.input.value.trim() })
        : await api.login({ username, password });
      app.onLogin(me);
      app.navigate(app.next);
    } catch (err) {
      submit.disabled = false;
      submit.textContent = signup ? 'Sign up' : 'Sign in';
      showServerError(err);
    }
  }

  /** @param {unknown} err */
  function showServerError(err) {
    const code = err instanceof ApiError ? err.code : 'unknown';
    const message = err instanceof Error ? err.message : String(err);
    const byField = {
      username_taken: 'username', invalid_username: 'username',
      invalid_display_name: 'display_name', weak_password: 'password', invalid_password: 'password',
    };
    const name = /** @type {Record<string, string>} */ (byField)[code];
    if (name && fields[name]) {
      setError(name, code === 'username_taken' ? 'That username is taken. Try another.' : capitalize(message));
      fields[name].input.focus();
    } else {
      formError.textContent = code === 'unauthorized' ? 'Wrong username or password.' : capitalize(message);
      formError.hidden = false;
    }
  }
}

/** @param {string} s */
function capitalize(s) {
  return s ? s[0].toUpperCase() + s.slice(1) + (/[.!?]$/.test(s) ? '' : '.') : s;
}
