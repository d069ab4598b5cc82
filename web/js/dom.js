// @ts-check
/**
 * Tiny DOM helpers. Text always goes in as text (textContent), never as
 * HTML, so nothing a user types can become markup.
 */

/**
 * Creates an element.
 * @param {string} tag
 * @param {Record<string, any>} [attrs] attributes; `on*` keys add listeners,
 *   `class` sets className, `dataset` merges data-*, booleans toggle.
 * @param {...(Node|string|number|null|undefined|false)} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, ...children);
  return el;
}

/**
 * Appends children, turning strings and numbers into text nodes.
 * @param {Node} parent
 * @param {...(Node|string|number|null|undefined|false)} children
 */
export function append(parent, ...children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

/** Replaces all children of `parent`.
 * @param {Element} parent
 * @param {...(Node|string|null|undefined|false)} children */
export function replace(parent, ...children) {
  parent.replaceChildren();
  append(parent, ...children);
}

/** An inline SVG icon from the set below.
 * @param {keyof typeof ICONS} name */
export function icon(name) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  for (const d of ICONS[name]) {
    const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
    path.setAttribute('d', d);
    svg.appendChild(path);
  }
  return svg;
}

/** Icon paths (24×24, stroked). */
const ICONS = {
  mic: ['M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3Z', 'M5 11a7 7 0 0 0 14 0', 'M12 18v3'],
  micOff: ['M9 9v3a3 3 0 0 0 5.1 2.1', 'M15 10V6a3 3 0 0 0-5.7-1.3', 'M5 11a7 7 0 0 0 11.5 5.4', 'M19 11a7 7 0 0 1-.4 2.3', 'M12 18v3', 'M3 3l18 18'],
  cam: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3'],
  camOff: ['M15 13v4H5', 'M3 7h6', 'M15 10l6-3v10l-6-3', 'M3 3l18 18'],
  screen: ['M3 4h18v12H3z', 'M8 20h8', 'M12 16v4'],
  chat: ['M4 5h16v11H8l-4 4z'],
  people: ['M9 11a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7Z', 'M2.5 20a6.5 6.5 0 0 1 13 0', 'M16 4.5a3.5 3.5 0 0 1 0 6.5', 'M18 14a6.5 6.5 0 0 1 3.5 6'],
  link: ['M10 14a4 4 0 0 0 6 .4l3-3a4 4 0 0 0-5.7-5.7l-1 1', 'M14 10a4 4 0 0 0-6-.4l-3 3a4 4 0 0 0 5.7 5.7l1-1'],
  leave: ['M3 15c5-5 13-5 18 0l-2.5 2.5-3-1.5v-3a11 11 0 0 0-7 0v3l-3 1.5z'],
  close: ['M6 6l12 12', 'M18 6 6 18'],
  send: ['M4 12l16-8-6 16-2-7z'],
  settings: ['M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6Z', 'M19 12a7 7 0 0 0-.1-1.2l2-1.5-2-3.4-2.3 1a7 7 0 0 0-2-1.2L14.2 3h-4.4l-.4 2.7a7 7 0 0 0-2 1.2l-2.3-1-2 3.4 2 1.5a7 7 0 0 0 0 2.4l-2 1.5 2 3.4 2.3-1a7 7 0 0 0 2 1.2l.4 2.7h4.4l.4-2.7a7 7 0 0 0 2-1.2l2.3 1 2-3.4-2-1.5c.1-.4.1-.8.1-1.2Z'],
  speaker: ['M3 4h18v11H3z', 'M4 18h4v2H4z', 'M10 18h4v2h-4z', 'M16 18h4v2h-4z'],
  gridView: ['M3 3h8v8H3z', 'M13 3h8v8h-8z', 'M3 13h8v8H3z', 'M13 13h8v8h-8z'],
  chevronLeft: ['M15 6l-6 6 6 6'],
  chevronRight: ['M9 6l6 6-6 6'],
  plus: ['M12 5v14', 'M5 12h14'],
};

/**
 * Shows a short message in the corner.
 * @param {string} text
 * @param {'info'|'error'} [kind]
 */
export function toast(text, kind = 'info') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const el = h('div', { class: `toast toast-${kind}` }, text);
  box.appendChild(el);
  setTimeout(() => el.classList.add('toast-out'), 3200);
  setTimeout(() => el.remove(), 3600);
}

/** Formats a time as e.g. "14:05". @param {string|Date} when */
export function clock(when) {
  const d = typeof when === 'string' ? new Date(when) : when;
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Formats a date relative to now ("today 14:05", "Mar 3"). @param {string} iso */
export function relativeDay(iso) {
  const d = new Date(iso);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return `Today ${clock(d)}`;
  return d.toLocaleDateString([], { month: 'short', day: 'numeric', year: d.getFullYear() === today.getFullYear() ? undefined : 'numeric' });
}
