// @ts-check
/**
 * The chat panel: history on join, earlier pages on demand, an unread count
 * while closed, and scrolling that follows new messages only when the reader
 * is already at the bottom. Message text is always rendered as text.
 */
import { api } from '../api.js';
import { clock, h, icon, replace } from '../dom.js';

/** @typedef {{id: number, user: {id: number, display_name: string, avatar_url: string}, text: string, sent_at: string, system?: boolean}} ChatMessage */

/** Distance from the bottom (px) within which the log keeps following. */
const FOLLOW_SLACK = 80;

export class ChatPanel {
  /**
   * @param {string} slug
   * @param {(text: string) => boolean} send
   * @param {() => void} close
   */
  constructor(slug, send, close) {
    this.slug = slug;
    this.unread = 0;
    /** @type {Set<number>} */
    this.ids = new Set();
    this.oldest = Infinity;
    this.log = h('div', { class: 'chat-log', role: 'log', 'aria-label': 'Chat messages', tabindex: 0 });
    this.more = /** @type {HTMLButtonElement} */ (h('button', { class: 'btn btn-ghost', type: 'button', hidden: true, onclick: () => this.loadEarlier() }, 'Show earlier messages'));
    this.jump = /** @type {HTMLButtonElement} */ (h('button', { class: 'btn new-messages', type: 'button', hidden: true, onclick: () => this.scrollToEnd() }, 'New messages'));
    this.input = /** @type {HTMLInputElement} */ (h('input', { class: 'input', 'aria-label': 'Message', placeholder: 'Send a message to everyone', maxlength: 2000, autocomplete: 'off' }));
    const form = h('form', { class: 'chat-form', onsubmit: (/** @type {SubmitEvent} */ e) => {
      e.preventDefault();
      const text = this.input.value;
      if (!text.trim()) return;
      if (send(text)) this.input.value = '';
    } }, this.input, h('button', { class: 'btn btn-primary btn-icon', type: 'submit', 'aria-label': 'Send' }, icon('send')));
    this.el = h('aside', { class: 'side', 'aria-label': 'Chat panel', hidden: true },
      h('div', { class: 'side-header' }, h('h2', {}, 'Chat'),
        h('button', { class: 'btn btn-ghost btn-icon', type: 'button', 'aria-label': 'Close chat', onclick: close }, icon('close'))),
      this.log, this.jump, form);
    this.log.addEventListener('scroll', () => {
      if (this.atBottom()) this.jump.hidden = true;
    });
  }

  /** @param {ChatMessage[]} history oldest first */
  setHistory(history) {
    this.ids.clear();
    replace(this.log, this.more);
    this.more.hidden = history.length < 50;
    this.oldest = history.length ? history[0].id : Infinity;
    for (const m of history) this.append(m);
    this.scrollToEnd();
  }

  /**
   * @param {ChatMessage} message
   * @param {boolean} closed whether the panel is closed (counts as unread)
   */
  add(message, closed) {
    if (this.ids.has(message.id)) return;
    const follow = this.atBottom();
    this.append(message);
    if (closed) this.unread += 1;
    if (follow || closed) this.scrollToEnd();
    else this.jump.hidden = false;
  }

  /** @param {ChatMessage} m @param {Node|null} [before] */
  append(m, before = null) {
    this.ids.add(m.id);
    if (m.system) {
      // A host action the meeting recorded ("Ada removed Bob").
      this.log.insertBefore(h('div', { class: 'chat-system', role: 'note', dataset: { id: String(m.id) } },
        h('span', {}, m.text), ' · ', h('time', { datetime: m.sent_at }, clock(m.sent_at))), before);
      return;
    }
    const el = h('div', { class: 'chat-message', dataset: { id: String(m.id) } },
      h('img', { class: 'avatar', src: m.user.avatar_url, alt: '' }),
      h('div', {},
        h('div', { class: 'who' }, h('span', { class: 'name' }, m.user.display_name), h('time', { datetime: m.sent_at }, clock(m.sent_at))),
        h('div', { class: 'text' }, m.text)));
    this.log.insertBefore(el, before);
  }

  async loadEarlier() {
    if (!Number.isFinite(this.oldest)) return;
    this.more.disabled = true;
    try {
      const page = await api.history(this.slug, this.oldest);
      const anchor = this.more.nextSibling;
      const height = this.log.scrollHeight;
      for (const m of [...page.messages].reverse()) {
        if (!this.ids.has(m.id)) this.append(m, anchor);
      }
      if (page.messages.length) this.oldest = page.messages[page.messages.length - 1].id;
      this.more.hidden = !page.has_more;
      // Keep the reader's place.
      this.log.scrollTop += this.log.scrollHeight - height;
    } finally {
      this.more.disabled = false;
    }
  }

  /** The panel became visible. */
  opened() {
    this.unread = 0;
    this.scrollToEnd();
    this.input.focus();
  }

  atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < FOLLOW_SLACK;
  }

  scrollToEnd() {
    this.log.scrollTop = this.log.scrollHeight;
    this.jump.hidden = true;
  }
}
