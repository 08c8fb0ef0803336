'use strict';
/*
 * Transport conformance server (tests/unit/test_transport_conformance.c): a second,
 * independent implementation of the Momento services our transport talks to, on
 * @grpc/grpc-js and the official @gomomento/generated-types (pinned in ../package.json).
 *
 *   node server.js PORT_FILE [--tls-cert PEM --tls-key PEM]
 *
 * Listens on 127.0.0.1 port 0 (plaintext, or TLS with that certificate), writes the bound port to PORT_FILE (written
 * to PORT_FILE.tmp, then renamed) and prints "conform-server listening on 127.0.0.1:PORT".
 * Exits 0 on SIGTERM/SIGINT (forceShutdown). Everything is kept in memory.
 *
 * Services (generated definitions; every other method of Scs/Pubsub answers
 * UNIMPLEMENTED, as does any unknown path):
 *   /cache_client.Ping/Ping            OK, or test behaviour chosen by "cache" metadata
 *   /cache_client.Scs/ListPushBack     appends to (cache metadata, list_name)
 *   /cache_client.Scs/ListFetch        whole list (range fields ignored); Missing if none
 *   /cache_client.pubsub.Pubsub/Publish    delivers to current subscribers of (cache, topic)
 *   /cache_client.pubsub.Pubsub/Subscribe  a heartbeat at once, then every publish as an
 *                                          item (sequence numbers from 1 per topic)
 *
 * Test behaviour:
 *   Ping, cache "hang"       never answers (counted in "cancelled" once the client cancels
 *                            or its deadline passes)
 *   Ping, cache "fail:N"     fails with status N, details FAIL_MESSAGE below, before any
 *                            message: grpc-js sends that as a Trailers-Only response, with
 *                            grpc-message percent-encoded (encodeURI)
 *   Ping, cache "limit:ERR"  fails RESOURCE_EXHAUSTED with trailing metadata err=ERR and
 *                            details LIMIT_MESSAGE + ERR, as hosted Momento refuses past a
 *                            limit; "limit:-" sends no err and details "too many
 *                            subscribers" (the words the SDKs fall back to)
 *   Ping, cache "goaway"     answers OK, then drains the port: a graceful GOAWAY on every
 *                            HTTP/2 session (in-flight calls may finish within 2 s)
 *   Subscribe, topic "stream:N"  N items (text "item-1".."item-N") then ends with OK
 *   Subscribe, topic "limit:ERR"  a heartbeat, then the Ping "limit:ERR" error (its
 *                            status in trailers after a message, not Trailers-Only)
 *   Subscribe, topic "hang"  sends nothing (not even the heartbeat) until cancelled
 *   ListFetch, list_name "conform:stats"  Found with one value, the ASCII text
 *                            "cancelled=C peers=P": C = calls (unary or stream) the client
 *                            cancelled so far (grpc-js 'cancelled' event), P = distinct
 *                            client addresses (ip:port, i.e. connections) seen so far
 *   ListFetch, list_name "conform:stats:N"  the same, but answered only once C >= N (or
 *                            after 5 s): the server handles a cancel on its own schedule
 * Limits: requests up to 64 MiB, responses unlimited (the client enforces its own).
 */
const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const {cache_client: ping} = require('@gomomento/generated-types/dist/cacheping');
const {cache_client: scs} = require('@gomomento/generated-types/dist/cacheclient');
const {cache_client: {pubsub}} = require('@gomomento/generated-types/dist/cachepubsub');
const {common} = require('@gomomento/generated-types/dist/common');

const FAIL_MESSAGE = 'conform: 100% failed, naïve café\ttab';
const LIMIT_MESSAGE = 'conform limit: ';
const [portFile, ...flags] = process.argv.slice(2);
const tls = {};
for (let i = 0; i + 1 < flags.length; i += 2) tls[flags[i]] = flags[i + 1];
if (!portFile || flags.length % 2 || Object.keys(tls).some(k => !/^--tls-(cert|key)$/.test(k)) ||
    !tls['--tls-cert'] !== !tls['--tls-key']) {
  console.error('usage: node server.js PORT_FILE [--tls-cert PEM --tls-key PEM]');
  process.exit(2);
}
const creds = tls['--tls-cert']
  ? grpc.ServerCredentials.createSsl(null, [{cert_chain: fs.readFileSync(tls['--tls-cert']),
    private_key: fs.readFileSync(tls['--tls-key'])}], false)
  : grpc.ServerCredentials.createInsecure();

const lists = new Map(); // "cache\0list(base64)" -> [Uint8Array]
const topics = new Map(); // "cache\0topic" -> {seq, subs: Set<call>}
const peers = new Set();
let cancelled = 0;
const statsWaiters = new Set(); // {min, answer}: stats calls waiting for a cancel count
let port = 0;

const server = new grpc.Server({
  'grpc.max_receive_message_length': 64 << 20,
  'grpc.max_send_message_length': -1,
});

function meta(call, key) {
  const v = call.metadata.get(key);
  return v.length ? String(v[0]) : '';
}

// Counts a call once when the client cancels it (or its deadline ends it) before the
// server finished it: grpc-js may emit 'cancelled' more than once, and also for calls it
// already answered.
function track(call) {
  peers.add(call.getPeer());
  call.on('cancelled', () => {
    if (call.conformDone) return;
    call.conformDone = true;
    cancelled++;
    for (const w of [...statsWaiters]) if (cancelled >= w.min) w.answer();
  });
}

// Marks the call finished by the server, then answers it.
function finish(call, done, err, resp) {
  call.conformDone = true;
  done(err, resp);
}

// The error hosted Momento answers past a limit ("limit:ERR" in the tests).
function limitError(spec) {
  const m = /^limit:(.+)$/.exec(spec);
  if (!m) return null;
  const metadata = new grpc.Metadata();
  if (m[1] !== '-') metadata.set('err', m[1]);
  return {code: grpc.status.RESOURCE_EXHAUSTED, metadata,
    details: m[1] === '-' ? 'too many subscribers' : LIMIT_MESSAGE + m[1]};
}

function onPing(call, done) {
  track(call);
  const cache = meta(call, 'cache');
  if (cache === 'hang') return;
  const fail = /^fail:(\d+)$/.exec(cache);
  if (fail) {
    finish(call, done, {code: Number(fail[1]), details: FAIL_MESSAGE});
    return;
  }
  const limit = limitError(cache);
  if (limit) {
    finish(call, done, limit);
    return;
  }
  finish(call, done, null, new ping._PingResponse());
  if (cache === 'goaway') setImmediate(() => server.drain(`127.0.0.1:${port}`, 2000));
}

function listKey(call, name) {
  return `${meta(call, 'cache')}\0${Buffer.from(name).toString('base64')}`;
}

function onPushBack(call, done) {
  track(call);
  const key = listKey(call, call.request.list_name);
  const list = lists.get(key) || [];
  list.push(call.request.value);
  lists.set(key, list);
  finish(call, done, null, new scs._ListPushBackResponse({list_length: list.length}));
}

function fetchResponse(values) {
  const Resp = scs._ListFetchResponse;
  return values ? new Resp({found: new Resp._Found({values})})
    : new Resp({missing: new Resp._Missing()});
}

function stats() {
  return fetchResponse([Buffer.from(`cancelled=${cancelled} peers=${peers.size}`)]);
}

// "conform:stats:N": answers once N calls were cancelled, or after 5 s.
function waitStats(call, done, min) {
  const w = {min};
  const timer = setTimeout(() => w.answer(), 5000);
  w.answer = () => {
    clearTimeout(timer);
    statsWaiters.delete(w);
    finish(call, done, null, stats());
  };
  if (cancelled >= min) w.answer();
  else statsWaiters.add(w);
}

function onFetch(call, done) {
  track(call);
  const name = Buffer.from(call.request.list_name).toString();
  if (name === 'conform:stats') {
    finish(call, done, null, stats());
    return;
  }
  const min = /^conform:stats:(\d+)$/.exec(name);
  if (min) {
    waitStats(call, done, Number(min[1]));
    return;
  }
  finish(call, done, null, fetchResponse(lists.get(listKey(call, call.request.list_name))));
}

function topicOf(cache, name) {
  const key = `${cache}\0${name}`;
  if (!topics.has(key)) topics.set(key, {seq: 0, subs: new Set()});
  return topics.get(key);
}

function item(seq, text) {
  return new pubsub._SubscriptionItem({item: new pubsub._TopicItem({
    topic_sequence_number: seq, value: new pubsub._TopicValue({text}), sequence_page: 1})});
}

function onPublish(call, done) {
  track(call);
  const t = topicOf(meta(call, 'cache') || call.request.cache_name, call.request.topic);
  t.seq++;
  const value = call.request.value;
  const msg = new pubsub._SubscriptionItem({item: new pubsub._TopicItem({
    topic_sequence_number: t.seq, value, sequence_page: 1})});
  for (const sub of t.subs) sub.write(msg);
  finish(call, done, null, new common._Empty());
}

function onSubscribe(call) {
  track(call);
  const topic = call.request.topic;
  if (topic === 'hang') return;
  const limit = limitError(topic);
  if (limit) {
    call.write(new pubsub._SubscriptionItem({heartbeat: new pubsub._Heartbeat()}));
    call.conformDone = true;
    call.emit('error', limit);
    return;
  }
  const n = /^stream:(\d+)$/.exec(topic);
  if (n) {
    for (let i = 1; i <= Number(n[1]); i++) call.write(item(i, `item-${i}`));
    call.conformDone = true;
    call.end();
    return;
  }
  const t = topicOf(meta(call, 'cache') || call.request.cache_name, topic);
  t.subs.add(call);
  const drop = () => t.subs.delete(call);
  call.on('cancelled', drop);
  call.on('close', drop);
  call.write(new pubsub._SubscriptionItem({heartbeat: new pubsub._Heartbeat()}));
}

server.addService(ping.UnimplementedPingService.definition, {Ping: onPing});
server.addService(scs.UnimplementedScsService.definition,
  {ListPushBack: onPushBack, ListFetch: onFetch});
server.addService(pubsub.UnimplementedPubsubService.definition,
  {Publish: onPublish, Subscribe: onSubscribe});

server.bindAsync('127.0.0.1:0', creds, (err, bound) => {
  if (err) {
    console.error(`conform-server: bind failed: ${err.message}`);
    process.exit(1);
  }
  port = bound;
  fs.writeFileSync(`${portFile}.tmp`, `${port}\n`);
  fs.renameSync(`${portFile}.tmp`, portFile);
  console.log(`conform-server listening on 127.0.0.1:${port}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.forceShutdown();
    process.exit(0);
  });
}
