'use strict';
// Topics with the official SDK's TopicClient against mim-local: text and binary across two
// clients, sequence numbers, tokenId() = the publisher's disposable token id, the immediate
// first heartbeat that makes subscribe() resolve, idle heartbeats, missing cache errors.
const {test, before, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, credentials, topicClient, authClient, recordingSubscribe, waitFor, cleanupAll,
} = require('../lib/harness');

const CACHE = 'interop-topics';
const HEARTBEAT_MS = 1500;
let server;
let alice; // two separate clients = two channels
let bob;
let auth;
const subs = [];

before(async () => {
  server = await startMimLocal({name: 'pubsub', caches: [CACHE], heartbeatMs: HEARTBEAT_MS});
  alice = topicClient(credentials(server));
  bob = topicClient(credentials(server));
  auth = authClient(credentials(server));
});

after(async () => {
  await cleanupAll([
    ...subs.map(s => () => s.unsubscribe()),
    () => alice?.close(),
    () => bob?.close(),
    () => auth?.close(),
    () => server?.stopClean(),
  ]);
});

async function subscribe(client, topic) {
  const rec = await recordingSubscribe(client, CACHE, topic);
  subs.push(rec);
  return rec;
}

async function publish(client, topic, value) {
  const r = await client.publish(CACHE, topic, value);
  assert.ok(r instanceof sdk.TopicPublish.Success, `publish ${topic}: ${r.toString()}`);
}

test('subscribe() resolves at once (server sends a heartbeat first)', async () => {
  // Own server with a long heartbeat interval: only an immediate first heartbeat (or item) lets
  // subscribe() resolve before the interval; without one it would wait 10 s or hit the SDK's
  // 5 s subscribe deadline.
  const slow = await startMimLocal({name: 'pubsub-first-item', caches: [CACHE], heartbeatMs: 10000});
  const client = topicClient(credentials(slow));
  try {
    const t0 = Date.now();
    const rec = await recordingSubscribe(client, CACHE, 'quick');
    const took = Date.now() - t0;
    rec.unsubscribe();
    assert.ok(took < 3000, `subscribe took ${took} ms`);
    assert.equal(rec.heartbeats, 1, 'the first message was a heartbeat');
  } finally {
    client.close();
    await slow.stop();
  }
});

test('text and binary published by one client reach another, in order, seq 1, 2', async () => {
  const rec = await subscribe(bob, 'room-1');
  const mine = await subscribe(alice, 'room-1');
  const bytes = new Uint8Array([0, 1, 2, 0x7f, 0x80, 0xff]);
  await publish(alice, 'room-1', 'hello from alice');
  await publish(alice, 'room-1', bytes);
  await waitFor(() => rec.items.length >= 2 && mine.items.length >= 2, 5000,
    () => `2 items (bob has ${rec.items.length}, alice ${mine.items.length})`);
  for (const r of [rec, mine]) {
    const [a, b] = r.items;
    assert.equal(typeof a.value(), 'string');
    assert.equal(a.valueString(), 'hello from alice');
    assert.ok(b.value() instanceof Uint8Array, 'binary stays binary');
    assert.deepEqual(Array.from(b.valueUint8Array()), Array.from(bytes));
    assert.equal(a.sequenceNumber(), 1, 'first message on a topic has sequence number 1');
    assert.equal(b.sequenceNumber(), 2);
    assert.equal(r.items.length, 2, 'no extra items');
    assert.equal(r.discontinuities.length, 0);
  }
  // And the other direction.
  await publish(bob, 'room-1', 'hi alice');
  await waitFor(() => mine.items.length >= 3, 5000, 'reply');
  assert.equal(mine.items[2].valueString(), 'hi alice');
  assert.equal(mine.items[2].sequenceNumber(), 3);
});

test('tokenId() on a received item is the publisher\'s disposable token id', async () => {
  const minted = await auth.generateDisposableToken(
    sdk.DisposableTokenScopes.topicPublishSubscribe(CACHE, 'room-2'),
    sdk.ExpiresIn.minutes(10),
    {tokenId: 'publisher-7'});
  assert.ok(minted instanceof sdk.GenerateDisposableToken.Success, minted.toString());
  const carol = topicClient(credentials(server, minted.authToken));
  try {
    const rec = await subscribe(bob, 'room-2');
    const r = await carol.publish(CACHE, 'room-2', 'signed by my token');
    assert.ok(r instanceof sdk.TopicPublish.Success, r.toString());
    await waitFor(() => rec.items.length >= 1, 5000, 'item');
    assert.equal(rec.items[0].valueString(), 'signed by my token');
    assert.equal(rec.items[0].tokenId(), 'publisher-7');
  } finally {
    carol.close();
  }
});

test('an idle subscription gets periodic heartbeats', async () => {
  const rec = await subscribe(bob, 'idle');
  const start = rec.heartbeats;
  await waitFor(() => rec.heartbeats >= start + 1, HEARTBEAT_MS * 3, 'a periodic heartbeat');
  assert.equal(rec.items.length, 0);
});

test('subscribe and publish on a missing cache fail with NOT_FOUND_ERROR', async () => {
  const s = await bob.subscribe('no-such-cache', 't', {});
  assert.ok(s instanceof sdk.TopicSubscribe.Error, s.toString());
  assert.equal(s.errorCode(), sdk.MomentoErrorCode.CACHE_NOT_FOUND_ERROR);
  const p = await bob.publish('no-such-cache', 't', 'x');
  assert.ok(p instanceof sdk.TopicPublish.Error, p.toString());
  assert.equal(p.errorCode(), sdk.MomentoErrorCode.CACHE_NOT_FOUND_ERROR);
});

test('SIGTERM with open subscriptions: mim-local exits 0 and subscribers see the stream end', async () => {
  const busy = await startMimLocal({name: 'pubsub-shutdown', caches: [CACHE]});
  const client = topicClient(credentials(busy));
  const publisher = topicClient(credentials(busy));
  try {
    const recs = [];
    for (const t of ['a', 'b', 'a']) {
      recs.push(await recordingSubscribe(client, CACHE, t));
    }
    await publish(publisher, 'a', 'before shutdown');
    await waitFor(() => recs[0].items.length === 1 && recs[2].items.length === 1, 5000, 'delivery');
    const st = await busy.stop();
    assert.deepEqual(st, {code: 0, signal: null}, `exit ${JSON.stringify(st)}:\n${busy.log().slice(-3000)}`);
    await waitFor(() => recs.every(r => r.connectionLost > 0 || r.errors.length > 0 || r.ended > 0), 5000,
      'every subscriber to notice');
    recs.forEach(r => r.unsubscribe());
  } finally {
    client.close();
    publisher.close();
    await busy.stop();
  }
});
