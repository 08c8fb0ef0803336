#!/usr/bin/env node
// Wire-check server for libmomento-im (driven by tests/unit/test_wire.c).
//
// A grpc-js server whose services, method paths and message classes all come from
// Momento's official generated types (@gomomento/generated-types). Every request our C
// client sends is decoded with the official class and recorded as one JSON line in the
// --record file *before* the answer goes out, so when a C call returns its record is on
// disk. A record holds:
//   path      the method path the client called
//   metadata  every request metadata entry (string values)
//   request   the decoded request: toObject() of the official class, with unset oneof
//             members left out and bytes as lowercase hex
//   raw, reserialized, roundtrip
//             the bytes received, the official class's own serialization of what it
//             decoded, and whether the two are equal. Unequal means we sent something the
//             official schema does not know (an unknown field number, a wrong wire type)
//             or encoded a field differently.
// Unknown methods are answered UNIMPLEMENTED by grpc-js (and the C call fails).
//
// Usage: node server.js --port-file FILE --record FILE [--host 127.0.0.1] [--port 0]
// The port file is written (atomically) once the server listens. SIGTERM/SIGINT stop it.
'use strict';

const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const pb = require('google-protobuf');
const { cache_client: cacheNs } = require('@gomomento/generated-types/dist/cacheclient');
const { cache_client: pubsubRoot } = require('@gomomento/generated-types/dist/cachepubsub');
const { cache_client: pingNs } = require('@gomomento/generated-types/dist/cacheping');
const { token: tokenNs } = require('@gomomento/generated-types/dist/token');
const { control_client: controlNs } = require('@gomomento/generated-types/dist/controlclient');

const pubsubNs = pubsubRoot.pubsub;

// Canned answers the C test checks on its side.
const FETCH_VALUES = ['wire-a', 'wire-b', 'wire-\u00e9'];
const PUSH_LENGTH = 7;
const MINTED = { api_key: 'wire-minted-key', endpoint: 'wire.example.com', valid_until: 1893456000 };
const FIRST_SEQUENCE = 41;
const FIRST_PAGE = 7;
const PUBLISHER = 'wire-publisher';

function parseArgs(argv) {
  const out = { host: '127.0.0.1', port: 0, portFile: null, record: null };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--host') out.host = v;
    else if (a === '--port') out.port = Number(v);
    else if (a === '--port-file') out.portFile = v;
    else if (a === '--record') out.record = v;
    else throw new Error(`unknown argument ${a}`);
    i++;
  }
  if (!out.portFile || !out.record) throw new Error('--port-file and --record are required');
  return out;
}

const args = parseArgs(process.argv);

// A plain-JSON view of a decoded message: what the official class says it holds.
function normalize(msg) {
  const obj = msg.toObject();
  const out = {};
  for (const key of Object.keys(obj)) {
    // Oneof members have has_<name>; toObject() reports unset scalar ones as defaults.
    if ('has_' + key in msg && !msg['has_' + key]) continue;
    out[key] = convert(msg[key]);
  }
  return out;
}

function convert(v) {
  if (v instanceof pb.Message) return normalize(v);
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(convert);
  return v;
}

function metadataOf(call) {
  const md = {};
  const map = call.metadata.getMap();
  for (const key of Object.keys(map)) {
    const v = map[key];
    md[key] = Buffer.isBuffer(v) ? 'bin:' + v.toString('hex') : String(v);
  }
  return md;
}

let seq = 0;
function record(path, call, raw, msg) {
  const again = Buffer.from(msg.serialize());
  const line = {
    seq: ++seq,
    path,
    metadata: metadataOf(call),
    request: normalize(msg),
    raw: raw.toString('hex'),
    reserialized: again.toString('hex'),
    roundtrip: again.equals(raw),
  };
  fs.appendFileSync(args.record, JSON.stringify(line) + '\n');
}

// Takes an official service definition and handlers (name -> (request, call, cb)) and
// returns a definition whose request deserializer keeps the raw bytes, plus wrapped
// handlers that decode with the official class, record, then answer.
function wire(definition, handlers) {
  const def = {};
  const impl = {};
  for (const name of Object.keys(handlers)) {
    const orig = definition[name];
    if (!orig) throw new Error(`the official definition has no method ${name}`);
    def[name] = { ...orig, requestDeserialize: (bytes) => bytes };
    const h = handlers[name];
    if (orig.responseStream) {
      impl[name] = (call) => {
        const msg = orig.requestDeserialize(call.request);
        record(orig.path, call, call.request, msg);
        h(msg, call);
      };
    } else {
      impl[name] = (call, cb) => {
        let msg;
        try {
          msg = orig.requestDeserialize(call.request);
        } catch (e) {
          fs.appendFileSync(args.record, JSON.stringify({ path: orig.path, error: String(e) }) + '\n');
          cb({ code: grpc.status.INTERNAL, details: 'wire: undecodable request' });
          return;
        }
        record(orig.path, call, call.request, msg);
        cb(null, h(msg, call));
      };
    }
  }
  return [def, impl];
}

const C = cacheNs;
const listLen = () => ({ list_length: PUSH_LENGTH });
const scs = wire(C.UnimplementedScsService.definition, {
  ListPushBack: () => new C._ListPushBackResponse(listLen()),
  ListPushFront: () => new C._ListPushFrontResponse(listLen()),
  ListConcatenateBack: () => new C._ListConcatenateBackResponse(listLen()),
  ListConcatenateFront: () => new C._ListConcatenateFrontResponse(listLen()),
  ListFetch: (req) => {
    // A list named "...missing" does not exist.
    if (Buffer.from(req.list_name).toString().endsWith('missing')) {
      return new C._ListFetchResponse({ missing: new C._ListFetchResponse._Missing() });
    }
    const values = FETCH_VALUES.map((s) => new Uint8Array(Buffer.from(s)));
    return new C._ListFetchResponse({ found: new C._ListFetchResponse._Found({ values }) });
  },
  ListLength: () =>
    new C._ListLengthResponse({ found: new C._ListLengthResponse._Found({ length: 3 }) }),
  ListRetain: () =>
    new C._ListRetainResponse({ found: new C._ListRetainResponse._Found({ list_length: 2 }) }),
  ListRemove: () =>
    new C._ListRemoveResponse({ found: new C._ListRemoveResponse._Found({ list_length: 2 }) }),
  ListErase: () =>
    new C._ListEraseResponse({ found: new C._ListEraseResponse._Found({ list_length: 1 }) }),
  ListPopFront: () =>
    new C._ListPopFrontResponse({
      found: new C._ListPopFrontResponse._Found({ front: new Uint8Array(Buffer.from('wire-front')), list_length: 2 }),
    }),
  ListPopBack: () =>
    new C._ListPopBackResponse({
      found: new C._ListPopBackResponse._Found({ back: new Uint8Array(Buffer.from('wire-back')), list_length: 2 }),
    }),
  Delete: () => new C._DeleteResponse(),
  ItemGetTtl: () =>
    new C._ItemGetTtlResponse({ found: new C._ItemGetTtlResponse._Found({ remaining_ttl_millis: 12345 }) }),
});

const P = pubsubNs;
const { common } = require('@gomomento/generated-types/dist/common');

// Subscribe: one heartbeat (the confirmation), then one item. A fresh subscription
// (resume_at 0) gets item FIRST_SEQUENCE of page FIRST_PAGE and then the stream ends, so
// the client's own re-subscription shows its resume fields; a resumed one gets the item
// it asked for and stays open until the client cancels. A resumed one on topic "gap" is
// told it cannot be served: a discontinuity (10 values later, next page) comes before the
// item.
function subscribe(req, call) {
  const resumeAt = req.resume_at_topic_sequence_number;
  const fresh = !resumeAt;
  let seq = fresh ? FIRST_SEQUENCE : resumeAt;
  let page = fresh ? FIRST_PAGE : req.sequence_page;
  call.write(new P._SubscriptionItem({ heartbeat: new P._Heartbeat() }));
  if (!fresh && req.topic === 'gap') {
    const discontinuity = new P._Discontinuity({
      last_topic_sequence: resumeAt - 1,
      new_topic_sequence: resumeAt + 9,
      new_sequence_page: page + 1,
    });
    call.write(new P._SubscriptionItem({ discontinuity }));
    seq = resumeAt + 10;
    page += 1;
  }
  const item = new P._TopicItem({
    topic_sequence_number: seq,
    sequence_page: page,
    publisher_id: PUBLISHER,
    value: new P._TopicValue({ text: `wire-item-${req.topic}` }),
  });
  call.write(new P._SubscriptionItem({ item }));
  if (fresh) call.end();
}

const pubsub = wire(P.UnimplementedPubsubService.definition, {
  Publish: () => new common._Empty(),
  Subscribe: subscribe,
});

const token = wire(tokenNs.UnimplementedTokenService.definition, {
  GenerateDisposableToken: () => new tokenNs._GenerateDisposableTokenResponse(MINTED),
});

const ping = wire(pingNs.UnimplementedPingService.definition, {
  Ping: () => new pingNs._PingResponse(),
});

const control = wire(controlNs.UnimplementedScsControlService.definition, {
  CreateCache: () => new controlNs._CreateCacheResponse(),
  DeleteCache: () => new controlNs._DeleteCacheResponse(),
});

const server = new grpc.Server();
for (const [def, impl] of [scs, pubsub, token, ping, control]) server.addService(def, impl);

server.bindAsync(`${args.host}:${args.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(`wire server: cannot listen: ${err.message}`);
    process.exit(1);
  }
  const tmp = `${args.portFile}.tmp`;
  fs.writeFileSync(tmp, `${port}\n`);
  fs.renameSync(tmp, args.portFile);
  console.log(`wire server listening on ${args.host}:${port}`);
});

function stop() {
  server.forceShutdown();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
