'use strict';
// Cache dictionaries with the official SDK against mim-local: dictionarySetField /
// dictionaryGetField / dictionaryFetch (Hit, Miss, missing field), a list and a dictionary
// under one key refused both ways as hosted Momento refuses them, TTL and refresh; and both
// directions with our C library (mim-peer): the SDK writes, C reads, and the reverse, under a
// token scoped to the one dictionary key (as the read-marker dictionary "<chat>-read" is).
const fs = require('node:fs');
const path = require('node:path');
const {execFile} = require('node:child_process');
const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, credentials, cacheClient, authClient, cleanupAll,
} = require('../lib/harness');

const REPO = path.resolve(__dirname, '..', '..', '..');
const PEER = process.env.MIM_PEER_BIN ||
  path.resolve(REPO, process.env.MIM_BUILD || 'build', 'interop', 'mim-peer');
const CACHE = 'interop-dicts';
let server;
let cache;
let auth;
const closers = [];

before(async () => {
  assert.ok(fs.existsSync(PEER), `${PEER} is missing: run tests/scripts/interop.sh (it builds it)`);
  server = await startMimLocal({name: 'dictionaries', caches: [CACHE]});
  cache = await cacheClient(credentials(server));
  auth = authClient(credentials(server));
  closers.push(() => cache.close(), () => auth.close());
});

after(async () => {
  await cleanupAll([...closers.reverse(), () => server?.stopClean()]);
});

const hex = b => Buffer.from(b).toString('hex');

function peer(key, ...args) {
  return new Promise((resolve, reject) => {
    const env = {...process.env, MIM_PEER_KEY: key, MIM_PEER_ENDPOINT: server.endpoint};
    execFile(PEER, args, {env, timeout: 15000}, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`mim-peer ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`));
        return;
      }
      resolve(stdout.trim().split('\n'));
    });
  });
}

async function setField(dict, field, value, opts) {
  const r = await cache.dictionarySetField(CACHE, dict, field, value, opts);
  assert.ok(r instanceof sdk.CacheDictionarySetField.Success, r.toString());
}

test('set, get and fetch: Hit, a missing field, a missing dictionary', async () => {
  await setField('d1', 'alice', '{"v":1,"id":"m1","ts":1}');
  await setField('d1', 'bob', 'two');
  await setField('d1', 'alice', 'replaced');
  const g = await cache.dictionaryGetField(CACHE, 'd1', 'alice');
  assert.ok(g instanceof sdk.CacheDictionaryGetField.Hit, g.toString());
  assert.equal(g.valueString(), 'replaced');
  const miss = await cache.dictionaryGetField(CACHE, 'd1', 'carol');
  assert.ok(miss instanceof sdk.CacheDictionaryGetField.Miss, miss.toString());
  const none = await cache.dictionaryGetField(CACHE, 'no-such-dict', 'alice');
  assert.ok(none instanceof sdk.CacheDictionaryGetField.Miss, none.toString());
  const f = await cache.dictionaryFetch(CACHE, 'd1');
  assert.ok(f instanceof sdk.CacheDictionaryFetch.Hit, f.toString());
  assert.deepEqual(f.valueRecord(), {alice: 'replaced', bob: 'two'});
  const fm = await cache.dictionaryFetch(CACHE, 'no-such-dict');
  assert.ok(fm instanceof sdk.CacheDictionaryFetch.Miss, fm.toString());
  // Several fields in one get: one answer per field, in order.
  const gs = await cache.dictionaryGetFields(CACHE, 'd1', ['bob', 'nobody', 'alice']);
  assert.ok(gs instanceof sdk.CacheDictionaryGetFields.Hit, gs.toString());
  assert.deepEqual(gs.valueRecord(), {bob: 'two', alice: 'replaced'});
  // Several fields in one set, binary values.
  const s = await cache.dictionarySetFields(CACHE, 'd2', new Map([['a', new Uint8Array([0, 1])], ['b', 'x']]));
  assert.ok(s instanceof sdk.CacheDictionarySetFields.Success, s.toString());
  const f2 = await cache.dictionaryFetch(CACHE, 'd2');
  assert.deepEqual(hex(f2.valueMapStringUint8Array().get('a')), '0001');
});

test('a list and a dictionary under one key are refused both ways (FAILED_PRECONDITION)', async () => {
  const p = await cache.listPushBack(CACHE, 'is-a-list', 'v');
  assert.ok(p instanceof sdk.CacheListPushBack.Success, p.toString());
  const s = await cache.dictionarySetField(CACHE, 'is-a-list', 'f', 'v');
  assert.ok(s instanceof sdk.CacheDictionarySetField.Error, s.toString());
  assert.equal(s.errorCode(), sdk.MomentoErrorCode.FAILED_PRECONDITION_ERROR);
  const g = await cache.dictionaryFetch(CACHE, 'is-a-list');
  assert.ok(g instanceof sdk.CacheDictionaryFetch.Error, g.toString());
  assert.equal(g.errorCode(), sdk.MomentoErrorCode.FAILED_PRECONDITION_ERROR);
  await setField('is-a-dict', 'f', 'v');
  const l = await cache.listFetch(CACHE, 'is-a-dict');
  assert.ok(l instanceof sdk.CacheListFetch.Error, l.toString());
  assert.equal(l.errorCode(), sdk.MomentoErrorCode.FAILED_PRECONDITION_ERROR);
  const len = await cache.listLength(CACHE, 'is-a-list');
  assert.equal(len.length(), 1);
});

test('TTL: set on creation, refreshed on request, then the dictionary expires', async () => {
  await setField('ttl', 'a', '1', {ttl: sdk.CollectionTtl.of(1)});
  const t1 = await cache.itemGetTtl(CACHE, 'ttl');
  assert.ok(t1 instanceof sdk.CacheItemGetTtl.Hit, t1.toString());
  assert.ok(t1.remainingTtlMillis() <= 1000);
  await setField('ttl', 'b', '2', {ttl: sdk.CollectionTtl.of(60).withNoRefreshTtlOnUpdates()});
  assert.ok((await cache.itemGetTtl(CACHE, 'ttl')).remainingTtlMillis() <= 1000);
  await setField('ttl', 'c', '3', {ttl: sdk.CollectionTtl.of(60)});
  assert.ok((await cache.itemGetTtl(CACHE, 'ttl')).remainingTtlMillis() > 1000);
  await setField('short', 'a', '1', {ttl: sdk.CollectionTtl.of(1)});
  const deadline = Date.now() + 10000;
  let r;
  do {
    r = await cache.dictionaryFetch(CACHE, 'short');
  } while (r instanceof sdk.CacheDictionaryFetch.Hit && Date.now() < deadline);
  assert.ok(r instanceof sdk.CacheDictionaryFetch.Miss, r.toString());
});

test('C library and SDK: fields written by one are read by the other', async () => {
  const minted = await auth.generateDisposableToken(
    sdk.DisposableTokenScopes.cacheKeyReadWrite(CACHE, 'chat-read'), sdk.ExpiresIn.minutes(10),
    {tokenId: 'alice'});
  assert.ok(minted instanceof sdk.GenerateDisposableToken.Success, minted.toString());
  const key = minted.authToken;
  const scoped = await cacheClient(credentials(server, key));
  closers.push(() => scoped.close());
  const marker = '{"v":1,"id":"m-7","ts":1764806400000}';
  // SDK writes, C reads.
  const s = await scoped.dictionarySetField(CACHE, 'chat-read', 'bob', marker);
  assert.ok(s instanceof sdk.CacheDictionarySetField.Success, s.toString());
  assert.deepEqual(await peer(key, 'dict-get', CACHE, 'chat-read', hex('bob')),
    [`value ${hex(marker)}`, 'ok']);
  assert.deepEqual(await peer(key, 'dict-get', CACHE, 'chat-read', hex('nobody')), ['missing', 'ok']);
  // C writes (bytes that are not UTF-8 too), the SDK reads.
  const bin = new Uint8Array([0xff, 0, 7]);
  assert.deepEqual(await peer(key, 'dict-set', CACHE, 'chat-read', hex('alice'), hex(bin)), ['ok']);
  const g = await scoped.dictionaryGetField(CACHE, 'chat-read', 'alice');
  assert.ok(g instanceof sdk.CacheDictionaryGetField.Hit, g.toString());
  assert.equal(hex(g.valueUint8Array()), hex(bin));
  const lines = await peer(key, 'dict-fetch', CACHE, 'chat-read');
  assert.deepEqual(lines.slice(0, 2).sort(),
    [`pair ${hex('alice')} ${hex(bin)}`, `pair ${hex('bob')} ${hex(marker)}`].sort());
  assert.deepEqual(lines.slice(2), ['found 2', 'ok']);
  // The token covers this key only.
  const out = await peer(key, 'dict-fetch', CACHE, 'other-read').catch(e => e.message);
  assert.match(String(out), /error \S*PERMISSION_DENIED/);
});
