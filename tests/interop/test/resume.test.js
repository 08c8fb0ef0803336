'use strict';
// Reconnect behaviour of the official SDK's subscription against mim-local: after a stream cut
// the SDK resubscribes with resume_at = last seen + 1 and the last sequence page; the server must
// replay what was missed exactly once, or send a discontinuity when it no longer has it.
//
// Two ways to cut a stream:
//  - a TCP relay in this process between the subscriber and the server (needs nothing from the
//    server: the SDK sees UNAVAILABLE, retries after 500 ms);
//  - SIGUSR1 to mim-local: test-only control that ends every open Subscribe stream with
//    UNAVAILABLE while keeping the topics and their replay buffers.
const {test, after} = require('node:test');
const assert = require('node:assert/strict');
const {
  sdk, startMimLocal, credentials, credentialsVia, topicClient, recordingSubscribe, startProxy,
  waitFor, cleanupAll,
} = require('../lib/harness');

const CACHE = 'interop-resume';
const cleanups = [];

after(async () => {
  await cleanupAll(cleanups.reverse());
});

async function setup(serverOpts) {
  const server = await startMimLocal({caches: [CACHE], ...serverOpts});
  cleanups.push(() => server.stopClean());
  const publisher = topicClient(credentials(server));
  cleanups.push(() => publisher.close());
  return {server, publisher};
}

async function publishAll(client, topic, values) {
  for (const v of values) {
    const r = await client.publish(CACHE, topic, v);
    assert.ok(r instanceof sdk.TopicPublish.Success, `publish ${v}: ${r.toString()}`);
  }
}

function assertNoDuplicates(rec) {
  const seqs = rec.items.map(i => i.sequenceNumber());
  for (let i = 1; i < seqs.length; i++) {
    assert.ok(seqs[i] > seqs[i - 1], `sequence numbers not increasing: ${seqs.join(',')}`);
  }
  const vals = rec.items.map(i => i.valueString());
  assert.equal(new Set(vals).size, vals.length, `duplicate values: ${vals.join(',')}`);
}

test('proxy cut: the resubscribed stream replays the missed messages exactly once', async () => {
  const {server, publisher} = await setup({name: 'resume-proxy'});
  const proxy = await startProxy(server.port);
  cleanups.push(() => proxy.close());
  const subscriber = topicClient(credentialsVia(proxy, server.rootKey));
  cleanups.push(() => subscriber.close());
  const rec = await recordingSubscribe(subscriber, CACHE, 'replayed');
  cleanups.push(() => rec.unsubscribe());

  await publishAll(publisher, 'replayed', ['m1', 'm2', 'm3']);
  await waitFor(() => rec.items.length === 3, 5000, () => `3 live items, have ${rec.items.length}`);

  proxy.cut(); // drop the subscriber's connection and refuse reconnects for now
  await waitFor(() => rec.connectionLost > 0, 5000, 'the SDK to notice the cut');
  await publishAll(publisher, 'replayed', ['m4', 'm5', 'm6']); // missed while disconnected
  proxy.resume();

  await waitFor(() => rec.items.length >= 6, 15000,
    () => `missed items to be replayed, have ${rec.items.map(i => i.valueString()).join(',')}`);
  await publishAll(publisher, 'replayed', ['m7']);
  await waitFor(() => rec.items.length >= 7, 5000, 'a live item after the resume');

  assert.deepEqual(rec.items.map(i => i.valueString()), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7']);
  assert.deepEqual(rec.items.map(i => i.sequenceNumber()), [1, 2, 3, 4, 5, 6, 7]);
  assert.equal(rec.discontinuities.length, 0, 'nothing was lost, so no discontinuity');
  assert.deepEqual(rec.errors, []);
});

test('proxy cut with a tiny replay buffer: a discontinuity, then no duplicates', async () => {
  const {server, publisher} = await setup({name: 'resume-gap', replay: 2});
  const proxy = await startProxy(server.port);
  cleanups.push(() => proxy.close());
  const subscriber = topicClient(credentialsVia(proxy, server.rootKey));
  cleanups.push(() => subscriber.close());
  const rec = await recordingSubscribe(subscriber, CACHE, 'lossy');
  cleanups.push(() => rec.unsubscribe());

  await publishAll(publisher, 'lossy', ['g1', 'g2']);
  await waitFor(() => rec.items.length === 2, 5000, '2 live items');

  proxy.cut();
  await waitFor(() => rec.connectionLost > 0, 5000, 'the SDK to notice the cut');
  await publishAll(publisher, 'lossy', ['g3', 'g4', 'g5', 'g6', 'g7']); // only 2 kept
  proxy.resume();

  await waitFor(() => rec.discontinuities.length >= 1, 15000, 'a discontinuity');
  await publishAll(publisher, 'lossy', ['g8']);
  await waitFor(() => rec.items.some(i => i.valueString() === 'g8'), 5000, 'a live item after it');

  const d = rec.discontinuities[0];
  assert.equal(rec.discontinuities.length, 1, rec.discontinuities.map(String).join('; '));
  assert.equal(d.lastSequenceNumber(), 2, `discontinuity ${d.toString()}`);
  assert.ok(d.newSequenceNumber() > 2, `discontinuity ${d.toString()}`);
  assertNoDuplicates(rec);
  const vals = rec.items.map(i => i.valueString());
  assert.deepEqual(vals.slice(0, 2), ['g1', 'g2']);
  assert.ok(!vals.includes('g3'), `g3 is out of the replay buffer yet was delivered: ${vals}`);
  assert.equal(vals[vals.length - 1], 'g8');
});

test('server-side cut (SIGUSR1): resubscribe gets the missed messages without duplicates', async () => {
  const {server, publisher} = await setup({name: 'resume-sigusr1'});
  const subscriber = topicClient(credentials(server));
  cleanups.push(() => subscriber.close());
  const rec = await recordingSubscribe(subscriber, CACHE, 'cut');
  cleanups.push(() => rec.unsubscribe());

  await publishAll(publisher, 'cut', ['s1', 's2']);
  await waitFor(() => rec.items.length === 2, 5000, '2 live items');

  server.signal('SIGUSR1');
  // The SDK waits 500 ms before resubscribing after an error: publish in that gap.
  await waitFor(() => rec.connectionLost > 0 || rec.ended > 0 || server.exitInfo(), 5000,
    'the stream to be cut');
  assert.equal(server.exitInfo(), null,
    `mim-local died on SIGUSR1 (no test-only stream cut?):\n${server.log().slice(-2000)}`);
  await publishAll(publisher, 'cut', ['s3', 's4', 's5']);

  await waitFor(() => rec.items.length >= 5, 10000,
    () => `missed items, have ${rec.items.map(i => i.valueString()).join(',')}`);
  await publishAll(publisher, 'cut', ['s6']);
  await waitFor(() => rec.items.length >= 6, 5000, 'a live item after the resume');
  assert.deepEqual(rec.items.map(i => i.valueString()), ['s1', 's2', 's3', 's4', 's5', 's6']);
  assert.deepEqual(rec.items.map(i => i.sequenceNumber()), [1, 2, 3, 4, 5, 6]);
  assert.equal(rec.discontinuities.length, 0);
});
