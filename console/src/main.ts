import { forgetKey, getKey, isUnauthenticated, message, setKey, whoAmI, type Me } from './api.js';
import { field, h, status } from './dom.js';
import { editorPage } from './pages/editor.js';
import { eventsPage } from './pages/events.js';
import { resetsPage } from './pages/resets.js';
import { subjectPage } from './pages/subject.js';
import { subjectsPage } from './pages/subjects.js';

/** What a page gets: who is calling, the route's parameters, and a way to stop timers. */
export interface PageContext {
  me: Me;
  params: URLSearchParams;
  onLeave(stop: () => void): void;
}

interface Route {
  title: string;
  /** The roles that may see the page (the service would refuse the rest anyway). */
  roles: readonly Me['role'][];
  render(root: HTMLElement, ctx: PageContext): void;
  nav: boolean;
}

const ROUTES: Record<string, Route> = {
  subjects: { title: 'Subjects', roles: ['reader', 'admin'], render: subjectsPage, nav: true },
  subject: {
    title: 'Subject',
    roles: ['consumer', 'reader', 'admin'],
    render: subjectPage,
    nav: true,
  },
  events: { title: 'Events', roles: ['reader', 'admin'], render: eventsPage, nav: true },
  resets: { title: 'Resets', roles: ['reader', 'admin'], render: resetsPage, nav: true },
  editor: { title: 'Quota editor', roles: ['admin'], render: editorPage, nav: true },
};

const main = document.getElementById('main')!;
const nav = document.getElementById('nav')!;
const who = document.getElementById('who')!;
let leaving: (() => void)[] = [];

function routeOf(me: Me): [string, URLSearchParams] {
  const [path = '', query = ''] = location.hash.replace(/^#\/?/, '').split('?', 2);
  const name = path in ROUTES ? path : me.role === 'consumer' ? 'subject' : 'subjects';
  return [name, new URLSearchParams(query)];
}

function render(me: Me): void {
  for (const stop of leaving) stop();
  leaving = [];
  const [name, params] = routeOf(me);
  const route = ROUTES[name]!;
  nav.replaceChildren(
    ...Object.entries(ROUTES)
      .filter(([, r]) => r.nav && r.roles.includes(me.role))
      .map(([n, r]) =>
        h('a', { href: `#/${n}`, 'aria-current': n === name ? 'page' : undefined }, r.title),
      ),
  );
  const page = h('section', { 'aria-labelledby': 'page-title' });
  page.append(h('h2', { id: 'page-title' }, route.title));
  if (!route.roles.includes(me.role)) {
    page.append(h('p', {}, `A key with role ${me.role} cannot use this page.`));
  } else {
    route.render(page, { me, params, onLeave: (stop) => leaving.push(stop) });
  }
  main.replaceChildren(page);
  document.title = `${route.title} · quota console`;
}

function showWho(me: Me): void {
  const forget = h('button', { type: 'button', id: 'forget-key' }, 'Forget key');
  forget.addEventListener('click', () => {
    forgetKey();
    location.hash = '';
    void start();
  });
  who.replaceChildren(
    h('span', {}, `${me.actor} · role ${me.role}${me.scope ? ` · subjects ${me.scope}` : ''}`),
    me.authenticated ? forget : '',
  );
}

/** The key form: shown when the service has keys and this tab has none (or a wrong one). */
function askForKey(problem: string | null): void {
  nav.replaceChildren();
  who.replaceChildren();
  const input = h('input', {
    id: 'api-key',
    type: 'password',
    autocomplete: 'off',
    required: true,
    spellcheck: 'false',
  });
  const st = status();
  if (problem) st.show(problem, true);
  const form = h(
    'form',
    { class: 'card', id: 'key-form' },
    h('p', {}, 'This service requires an API key. It is kept in this tab only.'),
    field('API key', input),
    h('button', { type: 'submit' }, 'Use key'),
    st,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    setKey(input.value.trim());
    input.value = '';
    void start();
  });
  main.replaceChildren(h('section', {}, h('h2', { id: 'page-title' }, 'API key'), form));
  input.focus();
}

async function start(): Promise<void> {
  let me: Me;
  try {
    me = await whoAmI();
  } catch (err) {
    if (isUnauthenticated(err)) {
      const had = getKey() !== null;
      forgetKey();
      return askForKey(had ? message(err) : null);
    }
    main.replaceChildren(h('p', { class: 'status error', role: 'alert' }, message(err)));
    return;
  }
  showWho(me);
  window.onhashchange = () => render(me);
  render(me);
}

void start();
