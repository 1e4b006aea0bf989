// The platform pages in headless Chromium against a real server, a real SMTP server (aiosmtpd)
// and a real ffmpeg publish: a password reset from the email's link; follow from the channel
// page, the go-live notification in the bell without a reload and one email; the notifications,
// following and settings pages. Screenshots land in the run's temp dir (printed).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { api, launchBrowser, pageOpener, publish, signup, startServer, startSmtp, until } from './support.mjs';

const CHANNEL = 'e2e_golive';
let smtp;
let server;
let browser;
let shots;
let owner;
let streamKey;
let publisher;

before(async () => {
  smtp = await startSmtp();
  server = await startServer(smtp.config);
  shots = join(server.dir, 'screenshots');
  mkdirSync(shots, { recursive: true });
  console.log(`screenshots: ${shots}`);
  owner = await signup(server, 'golive_owner');
  streamKey = (await api(server, 'POST', '/api/v1/channels', { name: CHANNEL, title: 'Going live soon' }, owner.token)).stream_key;
  browser = await launchBrowser();
});

after(async () => {
  await publisher?.stop();
  await browser?.close();
  await server?.stop();
  await smtp?.stop();
});

const { pages, page, signIn } = pageOpener(() => server);

/// The newest message to `to` whose subject matches, once it arrived.
const mailTo = (to, subject) =>
  until(`an email "${subject}" to ${to}`, () => smtp.messages().filter((m) => m.to === to && subject.test(m.subject)).at(-1), 15000);

/// Opens the verification link of `username`'s signup email in the browser (the /verify-email
/// page confirms it).
async function verifyAddress(username) {
  const mail = await mailTo(`${username}@example.com`, /Confirm your email/);
  const link = new URL(mail.link('/verify-email'));
  const context = await browser.newContext();
  const opened = await page(context, link.pathname + link.search);
  await opened.getByText('Your address is confirmed. Thank you!').waitFor();
  await context.close();
}

test('a forgotten password is reset from the link in the email', async () => {
  await signup(server, 'forgetful_fan', 'the old password');
  const context = await browser.newContext();
  const login = await page(context, '/login');
  await login.getByRole('link', { name: 'Forgot your password?' }).click();
  await login.waitForURL((url) => url.pathname === '/forgot-password');
  await login.getByLabel('Email').fill('forgetful_fan@example.com');
  await login.getByRole('button', { name: 'Send the link' }).click();
  await login.getByRole('heading', { name: 'Check your email' }).waitFor();
  const mail = await mailTo('forgetful_fan@example.com', /Reset your password/);
  const link = mail.link('/reset-password');
  assert.ok(link?.startsWith(`${server.url}/reset-password?token=`), link);
  await login.goto(link);
  await login.getByLabel('New password').fill('a new password at last');
  await login.getByLabel('The same again').fill('a new password at last');
  await login.getByRole('button', { name: 'Change my password' }).click();
  await login.getByRole('heading', { name: 'Password changed' }).waitFor();
  await login.screenshot({ path: join(shots, 'password-reset.png') });
  await signIn(context, 'forgetful_fan', 'a new password at last', '/');
  await context.close();
});

test('a follower hears of the go-live in the bell without a reload, and by email once', async () => {
  await signup(server, 'bell_fan');
  await signup(server, 'quiet_fan');
  await verifyAddress('bell_fan');
  await verifyAddress('quiet_fan');

  // quiet_fan follows too but turns go-live emails off on the settings page.
  const quietContext = await browser.newContext();
  const quiet = await signIn(quietContext, 'quiet_fan', undefined, `/${CHANNEL}`);
  await quiet.getByRole('button', { name: 'Follow' }).click();
  await quiet.getByRole('button', { name: 'Unfollow' }).waitFor();
  await quiet.goto(`${server.url}/settings/notifications`);
  const emailBox = quiet.getByLabel('A channel you follow goes live: by email');
  await emailBox.waitFor();
  assert.equal(await emailBox.isChecked(), true);
  await emailBox.uncheck();
  await quiet.getByText('Saved').first().waitFor();
  await quiet.screenshot({ path: join(shots, 'settings.png'), fullPage: true });

  const context = await browser.newContext();
  const fan = await signIn(context, 'bell_fan', undefined, `/${CHANNEL}`);
  await fan.getByRole('button', { name: 'Follow' }).click();
  await fan.getByRole('button', { name: 'Unfollow' }).waitFor();
  assert.match(await fan.getByTestId('followers').textContent(), /^2 followers$/);
  await fan.screenshot({ path: join(shots, 'channel-following.png') });
  // Wait on the following page; the broadcast starts meanwhile.
  await fan.getByRole('link', { name: 'Following' }).click();
  await fan.getByTestId('following').getByText(CHANNEL).first().waitFor();
  const before = smtp.messages().length;
  publisher = publish(server, streamKey);
  await fan.getByTestId('unread-count').waitFor({ timeout: 30000 });
  assert.equal(await fan.getByTestId('unread-count').textContent(), '1');
  await fan.locator('.toast', { hasText: `${CHANNEL} is live` }).waitFor();
  await fan.screenshot({ path: join(shots, 'bell.png') });

  const goLive = await until('the go-live email', () => {
    const mails = smtp.messages().slice(before).filter((m) => m.subject.includes(' is live'));
    return mails.length ? mails : undefined;
  });
  await new Promise((done) => setTimeout(done, 1500));
  const all = smtp.messages().slice(before).filter((m) => m.subject.includes(' is live'));
  assert.deepEqual(all.map((m) => m.to), ['bell_fan@example.com'], 'one go-live email, to the fan who wants it');
  assert.equal(goLive[0].link(`/${CHANNEL}`), `${server.url}/${CHANNEL}`);

  // The notifications page: open it from the bell, mark everything read.
  await fan.getByTestId('bell').click();
  await fan.waitForURL((url) => url.pathname === '/notifications');
  const item = fan.getByTestId('notifications').locator('li.unread', { hasText: `${CHANNEL} is live` });
  await item.waitFor();
  await fan.screenshot({ path: join(shots, 'notifications.png') });
  await fan.getByRole('button', { name: 'Mark all read' }).click();
  await fan.getByTestId('unread-count').waitFor({ state: 'detached' });
  assert.equal(await fan.getByTestId('notifications').locator('li.unread').count(), 0);

  // Following shows the channel live now; unfollowing removes it.
  await fan.getByRole('link', { name: 'Following' }).click();
  const card = fan.getByTestId('following').locator('li', { hasText: CHANNEL });
  await card.locator('.tag.live').waitFor();
  await fan.screenshot({ path: join(shots, 'following.png') });
  await card.getByRole('button', { name: 'Unfollow' }).click();
  await card.waitFor({ state: 'detached' });
  await context.close();
  await quietContext.close();
});

test('the owner sees the new followers in their notifications and on the dashboard', async () => {
  const context = await browser.newContext();
  const mine = await signIn(context, 'golive_owner', undefined, '/notifications');
  await mine.getByTestId('notifications').getByText('bell_fan followed e2e_golive').waitFor();
  await mine.getByTestId('notifications').getByText('quiet_fan followed e2e_golive').waitFor();
  // bell_fan unfollowed since; quiet_fan still follows.
  await mine.getByRole('link', { name: 'Dashboard' }).click();
  await mine.getByTestId('followers-list').getByRole('link', { name: 'quiet_fan' }).waitFor();
  assert.equal(await mine.getByTestId('follower-count').textContent(), '1 follower');
  await context.close();
});


test('search finds the channel from the header box, hostile text is only text, and browse lists it under its category', async () => {
  await api(server, 'PATCH', `/api/v1/channels/${CHANNEL}`, { category: 'Cooking', tags: ['bread'] }, owner.token);
  const context = await browser.newContext();
  const home = await page(context, '/');
  await home.getByRole('searchbox', { name: 'Search' }).first().fill('going liv');
  await home.getByRole('searchbox', { name: 'Search' }).first().press('Enter');
  await home.waitForURL((url) => url.pathname === '/search');
  await home.getByTestId('results-channels').getByText(CHANNEL).first().waitFor();
  await home.screenshot({ path: join(shots, 'search.png') });
  const box = home.getByRole('searchbox', { name: 'Search' }).last();
  await box.fill('"* NEAR( :* \\');
  await home.waitForURL((url) => url.search.includes('NEAR'));
  await home.getByText('Nothing else matches').waitFor();
  assert.equal(await home.getByTestId('results-channels').count(), 0);

  await home.getByRole('link', { name: 'Browse' }).click();
  await home.waitForURL((url) => url.pathname === '/browse');
  await home.getByRole('navigation', { name: 'Categories' }).getByRole('link', { name: /Cooking/ }).click();
  await home.waitForURL((url) => url.search.includes('category=Cooking'));
  await home.getByTestId('browse').getByText(CHANNEL).first().waitFor();
  await home.screenshot({ path: join(shots, 'browse.png') });
  await context.close();
});

// A 2x2 PNG.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGM4YRQFRAwQCgAm9gVRSPyatQAAAABJRU5ErkJggg==',
  'base64',
);

test('a user edits their profile, sees it in public, exports their data and deletes their account', async () => {
  await signup(server, 'profile_fan');
  const context = await browser.newContext();
  const settings = await signIn(context, 'profile_fan', undefined, '/settings');
  await settings.getByLabel('Display name').fill('Profile Fan');
  await settings.getByLabel('Bio').fill('Watches everything.');
  await settings.getByRole('button', { name: 'Add a link' }).click();
  await settings.getByLabel('Link 1 title').fill('Home');
  await settings.getByLabel('Link 1 address').fill('https://example.com/fan');
  await settings.getByRole('button', { name: 'Save profile' }).click();
  await settings.getByText('Profile saved').waitFor();
  await settings.locator('input[type=file]').first().setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: PNG });
  await settings.getByText('Picture changed').waitFor();
  const refused = settings.locator('input[type=file]').first();
  await refused.setInputFiles({ name: 'evil.png', mimeType: 'image/png', buffer: Buffer.from('<svg onload="alert(1)"></svg>') });
  await settings.getByRole('alert').filter({ hasText: 'not a picture' }).waitFor();

  await settings.getByRole('link', { name: 'See your profile' }).click();
  await settings.waitForURL((url) => url.pathname === '/u/profile_fan');
  await settings.getByRole('heading', { name: 'Profile Fan' }).waitFor();
  await settings.getByText('Watches everything.').waitFor();
  assert.equal(await settings.getByRole('link', { name: 'Home' }).getAttribute('rel'), 'nofollow ugc noopener noreferrer');
  const avatar = settings.locator('img.avatar');
  await avatar.waitFor();
  assert.ok(await avatar.evaluate((img) => img.complete && img.naturalWidth === 256), 'the avatar was re-encoded at 256 px');
  await settings.screenshot({ path: join(shots, 'profile.png') });

  await settings.goto(`${server.url}/settings`);
  await settings.getByRole('button', { name: 'Export my data' }).click();
  const download = settings.getByTestId('exports').getByRole('link', { name: /Download/ });
  await download.waitFor({ timeout: 20000 });
  const href = await download.getAttribute('href');
  const exported = await settings.evaluate(async (url) => (await fetch(url)).json(), href);
  assert.equal(exported.account.username, 'profile_fan');
  assert.equal(exported.profile.display_name, 'Profile Fan');

  settings.once('dialog', (dialog) => dialog.accept());
  await settings.getByLabel('Your password', { exact: true }).last().fill('correct horse battery');
  await settings.getByRole('button', { name: 'Delete my account' }).click();
  await settings.waitForURL((url) => url.pathname === '/');
  await settings.getByRole('link', { name: 'Sign up' }).waitFor();
  const gone = await fetch(`${server.url}/api/v1/users/profile_fan`);
  assert.equal(gone.status, 404);
  await context.close();
});

test('no page logged a console error', () => {
  // The refused upload answers 415 on purpose; the browser logs that as a failed resource.
  const problems = pages.flatMap((p) => p.problems).filter((problem) => !/status of 415/.test(problem));
  assert.deepEqual(problems, []);
});
