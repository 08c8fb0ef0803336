'use strict';
// Cache lists with the official SDK's CacheClient against mim-local (root key):
// listPushBack with truncateFrontToSize, listFetch whole and sliced (incl. negative indexes),
// listLength, listRemoveValue, listRetain, binary values, missing lists.
const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, credentials, cacheClient, topicClient, cleanupAll,
} = require('../lib/harness');

const CACHE = 'interop-lists';
let server;
let cache;

before(async () => {
  server = await startMimLocal({name: 'lists', caches: [CACHE]});
  cache = await cacheClient(credentials(server));
});

after(async () => {
  await cleanupAll([() => cache?.close(), () => server?.stopClean()]);
});

async function fetch(list, opts) {
  const r = await cache.listFetch(CACHE, list, opts);
  assert.ok(r instanceof sdk.CacheListFetch.Hit, `listFetch ${list} ${JSON.stringify(opts)}: ${r.toString()}`);
  return r.valueListString();
}

async function pushAll(list, values) {
  for (const v of values) {
    const r = await cache.listPushBack(CACHE, list, v);
    assert.ok(r instanceof sdk.CacheListPushBack.Success, r.toString());
  }
}

const TEN = Array.from({length: 10}, (_, i) => `m${i}`);

test('listPushBack with truncateFrontToSize keeps the last N', async () => {
  const lengths = [];
  for (const v of ['a', 'b', 'c', 'd', 'e']) {
    const r = await cache.listPushBack(CACHE, 'capped', v, {truncateFrontToSize: 3});
    assert.ok(r instanceof sdk.CacheListPushBack.Success, r.toString());
    lengths.push(r.listLength());
  }
  assert.deepEqual(lengths, [1, 2, 3, 3, 3]);
  assert.deepEqual(await fetch('capped'), ['c', 'd', 'e']);
});

test('listFetch: whole list and slices (positive, negative, open-ended)', async () => {
  await pushAll('ten', TEN);
  assert.deepEqual(await fetch('ten'), TEN);
  assert.deepEqual(await fetch('ten', {startIndex: 2, endIndex: 5}), ['m2', 'm3', 'm4']);
  assert.deepEqual(await fetch('ten', {startIndex: 8}), ['m8', 'm9']);
  assert.deepEqual(await fetch('ten', {endIndex: 2}), ['m0', 'm1']);
  assert.deepEqual(await fetch('ten', {startIndex: -3}), ['m7', 'm8', 'm9']);
  assert.deepEqual(await fetch('ten', {endIndex: -8}), ['m0', 'm1']);
  assert.deepEqual(await fetch('ten', {startIndex: -4, endIndex: -1}), ['m6', 'm7', 'm8']);
  assert.deepEqual(await fetch('ten', {startIndex: 3, endIndex: -5}), ['m3', 'm4']);
});

test('listLength, and Miss for a list that does not exist', async () => {
  await pushAll('len', ['x', 'y', 'z']);
  const r = await cache.listLength(CACHE, 'len');
  assert.ok(r instanceof sdk.CacheListLength.Hit, r.toString());
  assert.equal(r.length(), 3);
  const miss = await cache.listLength(CACHE, 'never-written');
  assert.ok(miss instanceof sdk.CacheListLength.Miss, miss.toString());
  const fmiss = await cache.listFetch(CACHE, 'never-written');
  assert.ok(fmiss instanceof sdk.CacheListFetch.Miss, fmiss.toString());
});

test('listRemoveValue removes every element equal to the value', async () => {
  await pushAll('dups', ['x', 'y', 'x', 'z', 'x']);
  const r = await cache.listRemoveValue(CACHE, 'dups', 'x');
  assert.ok(r instanceof sdk.CacheListRemoveValue.Success, r.toString());
  assert.deepEqual(await fetch('dups'), ['y', 'z']);
  const none = await cache.listRemoveValue(CACHE, 'dups', 'absent');
  assert.ok(none instanceof sdk.CacheListRemoveValue.Success, none.toString());
  assert.deepEqual(await fetch('dups'), ['y', 'z']);
});

test('listRetain keeps a slice (positive then negative indexes)', async () => {
  await pushAll('retain', TEN);
  const r = await cache.listRetain(CACHE, 'retain', {startIndex: 2, endIndex: 6});
  assert.ok(r instanceof sdk.CacheListRetain.Success, r.toString());
  assert.deepEqual(await fetch('retain'), ['m2', 'm3', 'm4', 'm5']);
  const r2 = await cache.listRetain(CACHE, 'retain', {startIndex: -2});
  assert.ok(r2 instanceof sdk.CacheListRetain.Success, r2.toString());
  assert.deepEqual(await fetch('retain'), ['m4', 'm5']);
});

test('binary values round-trip byte for byte', async () => {
  const bin = new Uint8Array([0, 1, 2, 0xfe, 0xff, 0x80]);
  const r = await cache.listPushBack(CACHE, 'bin', bin);
  assert.ok(r instanceof sdk.CacheListPushBack.Success, r.toString());
  const f = await cache.listFetch(CACHE, 'bin');
  assert.ok(f instanceof sdk.CacheListFetch.Hit, f.toString());
  assert.deepEqual(Array.from(f.valueListUint8Array()[0]), Array.from(bin));
});

test('listPushFront with truncateBackToSize keeps the first N', async () => {
  for (const v of ['a', 'b', 'c', 'd']) {
    const r = await cache.listPushFront(CACHE, 'front', v, {truncateBackToSize: 3});
    assert.ok(r instanceof sdk.CacheListPushFront.Success, r.toString());
  }
  assert.deepEqual(await fetch('front'), ['d', 'c', 'b']);
});

test('listConcatenateBack/Front with truncation', async () => {
  let r = await cache.listConcatenateBack(CACHE, 'concat', ['1', '2', '3']);
  assert.ok(r instanceof sdk.CacheListConcatenateBack.Success, r.toString());
  assert.equal(r.listLength(), 3);
  r = await cache.listConcatenateBack(CACHE, 'concat', ['4', '5'], {truncateFrontToSize: 4});
  assert.ok(r instanceof sdk.CacheListConcatenateBack.Success, r.toString());
  assert.equal(r.listLength(), 4);
  assert.deepEqual(await fetch('concat'), ['2', '3', '4', '5']);
  const f = await cache.listConcatenateFront(CACHE, 'concat', ['x', 'y'], {truncateBackToSize: 3});
  assert.ok(f instanceof sdk.CacheListConcatenateFront.Success, f.toString());
  assert.deepEqual(await fetch('concat'), ['x', 'y', '2']);
});

test('listPopFront / listPopBack, Miss on a missing list', async () => {
  await pushAll('pop', ['p1', 'p2', 'p3']);
  const front = await cache.listPopFront(CACHE, 'pop');
  assert.ok(front instanceof sdk.CacheListPopFront.Hit, front.toString());
  assert.equal(front.valueString(), 'p1');
  const back = await cache.listPopBack(CACHE, 'pop');
  assert.ok(back instanceof sdk.CacheListPopBack.Hit, back.toString());
  assert.equal(back.valueString(), 'p3');
  assert.deepEqual(await fetch('pop'), ['p2']);
  const miss = await cache.listPopFront(CACHE, 'never-written');
  assert.ok(miss instanceof sdk.CacheListPopFront.Miss, miss.toString());
});

test('list TTL: itemGetTtl, refresh on write, no refresh when asked, expiry', async () => {
  const ttl = async list => {
    const r = await cache.itemGetTtl(CACHE, list);
    assert.ok(r instanceof sdk.CacheItemGetTtl.Hit, `itemGetTtl ${list}: ${r.toString()}`);
    return r.remainingTtlMillis();
  };
  await cache.listPushBack(CACHE, 'ttl', 'v', {ttl: sdk.CollectionTtl.of(100)});
  let left = await ttl('ttl');
  assert.ok(left > 90000 && left <= 100000, `remaining ${left}`);
  await cache.listPushBack(CACHE, 'ttl', 'v', {ttl: sdk.CollectionTtl.of(50)}); // refreshes
  left = await ttl('ttl');
  assert.ok(left > 40000 && left <= 50000, `refreshed remaining ${left}`);
  await cache.listPushBack(CACHE, 'ttl', 'v', {ttl: new sdk.CollectionTtl(5, false)}); // keeps
  left = await ttl('ttl');
  assert.ok(left > 40000 && left <= 50000, `not refreshed remaining ${left}`);

  await cache.listPushBack(CACHE, 'short', 'v', {ttl: sdk.CollectionTtl.of(1)});
  const miss = await cache.itemGetTtl(CACHE, 'never-written');
  assert.ok(miss instanceof sdk.CacheItemGetTtl.Miss, miss.toString());
  const deadline = Date.now() + 5000;
  let r;
  do {
    await new Promise(res => setTimeout(res, 100));
    r = await cache.listFetch(CACHE, 'short');
  } while (r instanceof sdk.CacheListFetch.Hit && Date.now() < deadline);
  assert.ok(r instanceof sdk.CacheListFetch.Miss, `a 1 s list is gone: ${r.toString()}`);
});

test('delete removes a list', async () => {
  await pushAll('doomed', ['d']);
  const r = await cache.delete(CACHE, 'doomed');
  assert.ok(r instanceof sdk.CacheDelete.Success, r.toString());
  const f = await cache.listFetch(CACHE, 'doomed');
  assert.ok(f instanceof sdk.CacheListFetch.Miss, f.toString());
});

test('over-limit values fail with LIMIT_EXCEEDED_ERROR (list and topic)', async () => {
  const small = await startMimLocal({name: 'lists-limits', caches: [CACHE],
    extraArgs: ['--max-message-bytes', '1024']});
  const creds = credentials(small);
  const c = await cacheClient(creds);
  const t = topicClient(creds);
  try {
    const big = 'x'.repeat(2048);
    const ok = await c.listPushBack(CACHE, 'l', 'x'.repeat(512));
    assert.ok(ok instanceof sdk.CacheListPushBack.Success, ok.toString());
    const r = await c.listPushBack(CACHE, 'l', big);
    assert.ok(r instanceof sdk.CacheListPushBack.Error, r.toString());
    assert.equal(r.errorCode(), sdk.MomentoErrorCode.LIMIT_EXCEEDED_ERROR);
    const p = await t.publish(CACHE, 'topic', big);
    assert.ok(p instanceof sdk.TopicPublish.Error, p.toString());
    assert.equal(p.errorCode(), sdk.MomentoErrorCode.LIMIT_EXCEEDED_ERROR);
  } finally {
    c.close();
    t.close();
    await small.stopClean();
  }
});
