// @ts-check
/** Sign-up, log-in, email verification and password reset (the pages without live content). */
import { boot } from './app.js';
import { byId, h } from './dom.js';
import { ApiError, api, logIn } from './session.js';

/** @param {string} id */
const input = (id) => /** @type {HTMLInputElement} */ (byId(id));

/**
 * Run `submit` on the form's submit, showing its error in the form's alert line.
 * @param {string} formId
 * @param {() => Promise<void>} submit
 */
function handle(formId, submit) {
  const form = /** @type {HTMLFormElement} */ (byId(formId));
  const error = byId(`${formId}-error`);
  const button = form.querySelector('button[type="submit"]');
  // The button is disabled in the HTML until this handler is attached: a form submitted
  // natively would put the password in a URL.
  button?.removeAttribute('disabled');
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    button?.setAttribute('disabled', '');
    try {
      await submit();
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : 'Something went wrong; try again.';
    } finally {
      button?.removeAttribute('disabled');
    }
  });
}

/**
 * Where to go after logging in: `?next=` when it names a page of this origin, else `/`.
 *
 * Checked by parsing, as the browser will: a prefix check is not enough, since browsers read
 * `\` as `/` and drop tabs and newlines (`/\evil.example`, `/%09/evil.example` and
 * `/\/evil.example` all mean `//evil.example`). The answer is the parsed URL itself (absolute),
 * so what was checked is what `location.assign` gets: a path such as `/.//evil.example`,
 * normalised to `//evil.example`, never travels as a relative reference.
 */
function nextPath() {
  const next = new URLSearchParams(location.search).get('next') ?? '/';
  try {
    const url = new URL(next, location.origin);
    if (url.origin === location.origin && (url.protocol === 'https:' || url.protocol === 'http:')) return url.href;
  } catch {
    // not a URL: the default
  }
  return new URL('/', location.origin).href;
}
Object.assign(window, { heraldNextPath: nextPath }); // for the browser tests

function loginPage() {
  handle('login-form', async () => {
    await logIn(input('email').value, input('password').value);
    location.assign(nextPath());
  });
}

function signupPage() {
  handle('signup-form', async () => {
    const email = input('email').value;
    const displayName = input('display-name').value.trim();
    await api('/api/auth/register', {
      method: 'POST',
      body: { email, password: input('password').value, ...(displayName ? { display_name: displayName } : {}) },
    });
    location.assign(`/verify?email=${encodeURIComponent(email)}`);
  });
}

/**
 * In development the mail goes to the dev mailbox: show the newest link mailed to `email`
 * whose path is `path` on the page, as a link to the page that opens it.
 * @param {string} email
 * @param {string} path  /api/auth/verify (opened at /verify) or /reset
 * @param {string} label
 */
async function showDevMail(email, path, label) {
  /** @type {{ to: string, link: string | null }[]} */
  const mails = await api('/dev/mailbox');
  const mail = mails.find((m) => m.to === email.toLowerCase() && m.link !== null && new URL(m.link).pathname === path);
  const token = mail?.link ? new URL(mail.link).searchParams.get('token') : null;
  if (token === null || token === undefined) return;
  const page = path === '/reset' ? '/reset' : '/verify';
  const id = path === '/reset' ? 'dev-reset-link' : 'dev-verify-link';
  byId('dev-mail').replaceChildren(
    h('h2', {}, ['Development mailbox']),
    h('p', {}, ['No mail server is configured, so the mail is shown here: ', h('a', { href: `${page}?token=${encodeURIComponent(token)}`, id }, [label]), '.']),
  );
}

const devMailbox = () => document.querySelector('meta[name="herald-dev"]') !== null;

/** The form that mails the verification link again (on the verify page). */
function resendForm(/** @type {string} */ email) {
  const form = byId('resend-form');
  form.hidden = false;
  input('email').value = email;
  handle('resend-form', async () => {
    const address = input('email').value;
    await api('/api/auth/verify/resend', { method: 'POST', body: { email: address } });
    byId('verify-status').textContent = `If ${address} has an account waiting for verification, a new link is on its way.`;
    if (devMailbox()) await showDevMail(address, '/api/auth/verify', 'open the verification link').catch(() => undefined);
  });
}

function forgotPage() {
  handle('forgot-form', async () => {
    const email = input('email').value;
    await api('/api/auth/password/forgot', { method: 'POST', body: { email } });
    byId('forgot-status').textContent = `If ${email} has an account, a link to choose a new password is on its way. It works for an hour.`;
    if (devMailbox()) await showDevMail(email, '/reset', 'open the password reset link').catch(() => undefined);
  });
}

function resetPage() {
  const token = new URLSearchParams(location.search).get('token');
  const status = byId('reset-status');
  if (token === null) {
    byId('reset-form').hidden = true;
    status.replaceChildren('This page needs the link from the reset mail. ', h('a', { href: '/forgot' }, ['Ask for one']), '.');
    return;
  }
  handle('reset-form', async () => {
    try {
      await api('/api/auth/password/reset', { method: 'POST', body: { token, password: input('password').value } });
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 404) {
        throw new ApiError(404, failure.reason, 'This reset link is used or expired. Ask for a new one on the “Forgot your password?” page.');
      }
      throw failure;
    }
    byId('reset-form').hidden = true;
    status.replaceChildren('Your password is changed. ', h('a', { href: '/login', id: 'reset-login' }, ['Log in']), ' with it.');
  });
}

async function verifyPage() {
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  const status = byId('verify-status');
  if (token === null) {
    const email = params.get('email') ?? '';
    status.textContent = email ? `We sent a verification link to ${email}. Open it to finish signing up.` : 'Open the link in the mail we sent you.';
    resendForm(email);
    if (email && devMailbox()) await showDevMail(email, '/api/auth/verify', 'open the verification link').catch(() => undefined);
    return;
  }
  try {
    await api('/api/auth/verify', { method: 'POST', body: { token } });
    status.replaceChildren('Your email address is verified. ', h('a', { href: '/login', id: 'verified-login' }, ['Log in']), '.');
  } catch (failure) {
    status.textContent = failure instanceof ApiError ? `${failure.message}.` : 'Verification failed; try again.';
    resendForm(params.get('email') ?? '');
  }
}

boot();
const page = document.body.dataset.page;
if (page === 'login') loginPage();
else if (page === 'signup') signupPage();
else if (page === 'verify') void verifyPage();
else if (page === 'forgot') forgotPage();
else if (page === 'reset') resetPage();
