// @ts-check
/** The inbox page: every item of the signed-in user, live (the header's inbox, in full). */
import { boot, inboxEntry } from './app.js';
import { byId, h, plural } from './dom.js';

const { inbox } = boot();
const list = byId('inbox-items');
const summary = byId('inbox-summary');
if (inbox === null) {
  summary.replaceChildren(h('a', { href: '/login?next=/inbox' }, ['Log in']), ' to see your inbox.');
} else {
  const markAll = byId('mark-all-read');
  markAll.hidden = false;
  markAll.addEventListener('click', () => void inbox.markAllRead());
  inbox.listen((state) => {
    summary.textContent = `${plural(state.unread, 'unread item')}.`;
    list.replaceChildren(...(state.items.length === 0 ? [h('li', { class: 'empty' }, ['Nothing yet.'])] : state.items.map((item) => inboxEntry(item, inbox))));
  });
}
