'use strict';
// Disposable tokens and permissions, driven by the official SDK against mim-local.
//
// The two instant-messaging policies (cache "instant-messaging", chat id C):
//   1. client-only:      readwrite on item key C; publishsubscribe on topic C
//   2. server-mediated:  read on item key C; publishonly on topic C-input; subscribeonly on topic C
// SDK fact (@gomomento/sdk 1.118.1): AuthClient.generateDisposableToken() can only send an item
// selector when EVERY permission in the scope is a cache-item permission; a scope mixing item and
// topic permissions goes through its generic path, which drops `item`, so the grant silently
// covers the whole cache. To check the exact policies we mint them with the SDK's own generated
// token stub (@gomomento/generated-types, the bytes the SDK would send) and then use the SDK's
// CacheClient/TopicClient for every call. The scopes the SDK can express are minted with
// AuthClient too.
const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, credentials, cacheClient, topicClient, authClient, recordingSubscribe,
  waitFor, sleep, cleanupAll, pm, cacheItem, topicGrant, mintExact: mintExactOn,
} = require('../lib/harness');

const IM = 'instant-messaging';
const OTHER_CACHE = 'other-cache';
const C = 'chat-42';
const OTHER = 'chat-99';
let server;
let root; // {cache, topics, auth}
const closers = [];

before(async () => {
  server = await startMimLocal({name: 'tokens', caches: [IM, OTHER_CACHE]});
  const creds = credentials(server);
  root = {cache: await cacheClient(creds), topics: topicClient(creds), auth: authClient(creds)};
  closers.push(() => root.cache.close(), () => root.topics.close(), () => root.auth.close());
  // Lists that exist, so reads have something to find.
  for (const [cache, list] of [[IM, C], [IM, OTHER], [OTHER_CACHE, C]]) {
    const r = await root.cache.listPushBack(cache, list, 'seed');
    assert.ok(r instanceof sdk.CacheListPushBack.Success, `seed ${cache}/${list}: ${r.toString()}`);
  }
});

after(async () => {
  await cleanupAll([...closers.reverse(), () => server?.stopClean()]);
});

const POLICY_CLIENT_ONLY = chat => [
  cacheItem(pm.CacheRole.CacheReadWrite, IM, chat),
  topicGrant(pm.TopicRole.TopicReadWrite, IM, chat),
];
const POLICY_SERVER_MEDIATED = chat => [
  cacheItem(pm.CacheRole.CacheReadOnly, IM, chat),
  topicGrant(pm.TopicRole.TopicWriteOnly, IM, `${chat}-input`),
  topicGrant(pm.TopicRole.TopicReadOnly, IM, chat),
];

const mintExact = (grants, tokenId, validForSeconds) =>
  mintExactOn(server, grants, tokenId, validForSeconds);

async function mintWithSdk(scope, tokenId, expiresIn = sdk.ExpiresIn.hours(1)) {
  const r = await root.auth.generateDisposableToken(scope, expiresIn, {tokenId});
  assert.ok(r instanceof sdk.GenerateDisposableToken.Success, `generateDisposableToken: ${r.toString()}`);
  return r;
}

async function clientsFor(key) {
  const creds = credentials(server, key);
  const c = {cache: await cacheClient(creds), topics: topicClient(creds), auth: authClient(creds)};
  closers.push(() => c.cache.close(), () => c.topics.close(), () => c.auth.close());
  return c;
}

// Each operation returns {ok: true} or {code: MomentoErrorCode, text}.
function outcome(resp, okClasses) {
  if (okClasses.some(k => resp instanceof k)) {
    return {ok: true};
  }
  return {code: typeof resp.errorCode === 'function' ? resp.errorCode() : 'NO_CODE', text: resp.toString()};
}
const OPS = {
  push: (c, cache, key) => c.cache.listPushBack(cache, key, 'v').then(r => outcome(r, [sdk.CacheListPushBack.Success])),
  fetch: (c, cache, key) => c.cache.listFetch(cache, key).then(r => outcome(r, [sdk.CacheListFetch.Hit, sdk.CacheListFetch.Miss])),
  length: (c, cache, key) => c.cache.listLength(cache, key).then(r => outcome(r, [sdk.CacheListLength.Hit, sdk.CacheListLength.Miss])),
  remove: (c, cache, key) => c.cache.listRemoveValue(cache, key, 'nothing-like-this').then(r => outcome(r, [sdk.CacheListRemoveValue.Success])),
  retain: (c, cache, key) => c.cache.listRetain(cache, key, {startIndex: 0}).then(r => outcome(r, [sdk.CacheListRetain.Success])),
  publish: (c, cache, topic) => c.topics.publish(cache, topic, 'x').then(r => outcome(r, [sdk.TopicPublish.Success])),
  subscribe: async (c, cache, topic) => {
    const r = await c.topics.subscribe(cache, topic, {});
    if (r instanceof sdk.TopicSubscribe.Subscription) {
      r.unsubscribe();
    }
    return outcome(r, [sdk.TopicSubscribe.Subscription]);
  },
};

/** Runs [op, cache, name, expected] rows ('ok' | 'denied' | 'unauthenticated'); asserts all. */
async function expectTable(c, rows) {
  const bad = [];
  for (const [op, cache, name, want] of rows) {
    const got = await OPS[op](c, cache, name);
    const wantCode = {denied: sdk.MomentoErrorCode.PERMISSION_ERROR,
      unauthenticated: sdk.MomentoErrorCode.AUTHENTICATION_ERROR}[want];
    const fine = want === 'ok' ? got.ok : got.code === wantCode;
    if (!fine) {
      bad.push(`${op}(${cache}/${name}): want ${want}, got ${got.ok ? 'success' : `${got.code} ${got.text}`}`);
    }
  }
  assert.deepEqual(bad, [], `\n  ${bad.join('\n  ')}`);
}

test('policy 1 (client-only), exact grants: allowed calls work, all others PERMISSION_ERROR', async () => {
  const c = await clientsFor(await mintExact(POLICY_CLIENT_ONLY(C), 'client-only-user'));
  await expectTable(c, [
    ['push', IM, C, 'ok'], ['fetch', IM, C, 'ok'], ['length', IM, C, 'ok'],
    ['remove', IM, C, 'ok'], ['retain', IM, C, 'ok'],
    ['publish', IM, C, 'ok'], ['subscribe', IM, C, 'ok'],
    ['push', IM, OTHER, 'denied'], ['fetch', IM, OTHER, 'denied'], ['length', IM, OTHER, 'denied'],
    ['publish', IM, OTHER, 'denied'], ['subscribe', IM, OTHER, 'denied'],
    ['publish', IM, `${C}-input`, 'denied'], ['subscribe', IM, `${C}-input`, 'denied'],
    ['fetch', OTHER_CACHE, C, 'denied'], ['push', OTHER_CACHE, C, 'denied'],
    ['publish', OTHER_CACHE, C, 'denied'],
  ]);
});

test('policy 1: a member publishes and reads back history; tokenId is the token id', async () => {
  const a = await clientsFor(await mintExact(POLICY_CLIENT_ONLY(C), 'member-a'));
  const b = await clientsFor(await mintExact(POLICY_CLIENT_ONLY(C), 'member-b'));
  const rec = await recordingSubscribe(b.topics, IM, C);
  closers.push(() => rec.unsubscribe());
  const push = await a.cache.listPushBack(IM, C, 'hello b', {truncateFrontToSize: 100});
  assert.ok(push instanceof sdk.CacheListPushBack.Success, push.toString());
  const pub = await a.topics.publish(IM, C, 'hello b');
  assert.ok(pub instanceof sdk.TopicPublish.Success, pub.toString());
  await waitFor(() => rec.items.length >= 1, 5000, 'the message');
  assert.equal(rec.items[0].valueString(), 'hello b');
  assert.equal(rec.items[0].tokenId(), 'member-a');
  const hist = await b.cache.listFetch(IM, C, {startIndex: -1});
  assert.ok(hist instanceof sdk.CacheListFetch.Hit, hist.toString());
  assert.deepEqual(hist.valueListString(), ['hello b']);
});

test('policy 2 (server-mediated), exact grants: allowed calls work, all others PERMISSION_ERROR', async () => {
  const c = await clientsFor(await mintExact(POLICY_SERVER_MEDIATED(C), 'mediated-user'));
  await expectTable(c, [
    ['fetch', IM, C, 'ok'], ['length', IM, C, 'ok'],
    ['publish', IM, `${C}-input`, 'ok'], ['subscribe', IM, C, 'ok'],
    // write with read-only
    ['push', IM, C, 'denied'], ['remove', IM, C, 'denied'], ['retain', IM, C, 'denied'],
    // publish on a subscribe-only topic, subscribe on a publish-only topic
    ['publish', IM, C, 'denied'], ['subscribe', IM, `${C}-input`, 'denied'],
    // other chat, other cache
    ['fetch', IM, OTHER, 'denied'], ['push', IM, OTHER, 'denied'],
    ['publish', IM, `${OTHER}-input`, 'denied'], ['subscribe', IM, OTHER, 'denied'],
    ['publish', IM, OTHER, 'denied'],
    ['fetch', OTHER_CACHE, C, 'denied'], ['subscribe', OTHER_CACHE, C, 'denied'],
  ]);
});

test('policy 2: moderator relays C-input to list C and topic C', async () => {
  const user = await clientsFor(await mintExact(POLICY_SERVER_MEDIATED(C), 'mediated-sender'));
  const inbox = await recordingSubscribe(root.topics, IM, `${C}-input`);
  const room = await recordingSubscribe(user.topics, IM, C);
  closers.push(() => inbox.unsubscribe(), () => room.unsubscribe());
  const pub = await user.topics.publish(IM, `${C}-input`, 'please relay');
  assert.ok(pub instanceof sdk.TopicPublish.Success, pub.toString());
  await waitFor(() => inbox.items.length >= 1, 5000, 'the input message at the moderator');
  assert.equal(inbox.items[0].tokenId(), 'mediated-sender', 'moderator sees who sent it');
  const text = `relayed: ${inbox.items[0].valueString()}`;
  const push = await root.cache.listPushBack(IM, C, text);
  assert.ok(push instanceof sdk.CacheListPushBack.Success, push.toString());
  const out = await root.topics.publish(IM, C, text);
  assert.ok(out instanceof sdk.TopicPublish.Success, out.toString());
  await waitFor(() => room.items.length >= 1, 5000, 'the relayed message');
  assert.equal(room.items[0].valueString(), 'relayed: please relay');
  const hist = await user.cache.listFetch(IM, C, {startIndex: -1});
  assert.ok(hist instanceof sdk.CacheListFetch.Hit, hist.toString());
  assert.deepEqual(hist.valueListString(), ['relayed: please relay']);
});

test('SDK generateDisposableToken, policy 1 as the SDK expresses it (item widened to the cache)', async () => {
  const scope = {permissions: [
    {role: sdk.CacheRole.ReadWrite, cache: IM, item: {key: C}},
    {role: sdk.TopicRole.PublishSubscribe, cache: IM, topic: C},
  ]};
  const minted = await mintWithSdk(scope, 'sdk-policy-1');
  const c = await clientsFor(minted.authToken);
  await expectTable(c, [
    ['push', IM, C, 'ok'], ['fetch', IM, C, 'ok'], ['publish', IM, C, 'ok'], ['subscribe', IM, C, 'ok'],
    ['publish', IM, OTHER, 'denied'], ['subscribe', IM, OTHER, 'denied'],
    ['fetch', OTHER_CACHE, C, 'denied'], ['publish', OTHER_CACHE, C, 'denied'],
  ]);
});

test('SDK generateDisposableToken, policy 2 as the SDK expresses it', async () => {
  const scope = {permissions: [
    {role: sdk.CacheRole.ReadOnly, cache: IM, item: {key: C}},
    {role: sdk.TopicRole.PublishOnly, cache: IM, topic: `${C}-input`},
    {role: sdk.TopicRole.SubscribeOnly, cache: IM, topic: C},
  ]};
  const minted = await mintWithSdk(scope, 'sdk-policy-2');
  const c = await clientsFor(minted.authToken);
  await expectTable(c, [
    ['fetch', IM, C, 'ok'], ['publish', IM, `${C}-input`, 'ok'], ['subscribe', IM, C, 'ok'],
    ['push', IM, C, 'denied'], ['publish', IM, C, 'denied'], ['subscribe', IM, `${C}-input`, 'denied'],
    ['subscribe', IM, OTHER, 'denied'], ['fetch', OTHER_CACHE, C, 'denied'],
  ]);
});

test('SDK generateDisposableToken with an item-only scope (cacheKeyReadWrite) is item-exact', async () => {
  const minted = await mintWithSdk(sdk.DisposableTokenScopes.cacheKeyReadWrite(IM, C), 'sdk-key-rw');
  assert.ok(minted.expiresAt.epoch() > Date.now() / 1000, 'expiresAt is in the future');
  const c = await clientsFor(minted.authToken);
  await expectTable(c, [
    ['push', IM, C, 'ok'], ['fetch', IM, C, 'ok'],
    ['push', IM, OTHER, 'denied'], ['fetch', IM, OTHER, 'denied'],
    ['publish', IM, C, 'denied'], ['subscribe', IM, C, 'denied'],
  ]);
});

test('a disposable token cannot mint broader permissions than it holds', async () => {
  const c = await clientsFor(await mintExact(POLICY_CLIENT_ONLY(C), 'escalator'));
  const r = await c.auth.generateDisposableToken(sdk.DisposableTokenScopes.cacheReadWrite(IM),
    sdk.ExpiresIn.minutes(5));
  assert.ok(r instanceof sdk.GenerateDisposableToken.Error, r.toString());
  assert.equal(r.errorCode(), sdk.MomentoErrorCode.PERMISSION_ERROR, r.toString());
});

test('an expired token fails with AUTHENTICATION_ERROR', async () => {
  const minted = await mintWithSdk(
    sdk.DisposableTokenScopes.topicPublishSubscribe(IM, C), 'short-lived', sdk.ExpiresIn.seconds(2));
  const c = await clientsFor(minted.authToken);
  await expectTable(c, [['publish', IM, C, 'ok']]);
  // Wait until the server's clock (whole seconds) is surely past valid_until.
  const until = (minted.expiresAt.epoch() + 1) * 1000 + 100;
  await sleep(Math.max(0, until - Date.now()));
  await expectTable(c, [
    ['publish', IM, C, 'unauthenticated'], ['subscribe', IM, C, 'unauthenticated'],
    ['fetch', IM, C, 'unauthenticated'],
  ]);
});

test('garbled and tampered tokens fail with AUTHENTICATION_ERROR', async () => {
  const ep = server.endpoint;
  const v1 = key => Buffer.from(JSON.stringify({endpoint: ep, api_key: key})).toString('base64');
  const garbled = await clientsFor(v1('not-a-real-token'));
  await expectTable(garbled, [['fetch', IM, C, 'unauthenticated'], ['publish', IM, C, 'unauthenticated']]);

  const good = await mintExact(POLICY_CLIENT_ONLY(C), 'to-be-tampered');
  const key = JSON.parse(Buffer.from(good, 'base64').toString('utf8')).api_key;
  const i = Math.floor(key.length / 2);
  const flipped = key.slice(0, i) + (key[i] === 'A' ? 'B' : 'A') + key.slice(i + 1);
  const tampered = await clientsFor(v1(flipped));
  await expectTable(tampered, [['fetch', IM, C, 'unauthenticated'], ['publish', IM, C, 'unauthenticated']]);
});
