#!/usr/bin/env node
// Static half of the wire check: compares our lib/proto schema with Momento's official
// generated types, message by message.
//
// Usage: node schema.js OURS.pb
//   OURS.pb: FileDescriptorSet of lib/proto/*.proto
//            (protoc-c --descriptor_set_out=OURS.pb --include_imports -Ilib/proto ...)
//
// For every message we define, the official class with the same full name must exist and
// agree on each field: number, name, wire-level type (string, bytes, uint64, sint32, ...),
// repeated or not, the message type's name for message fields, and oneof grouping. Every
// method of our services must exist with the same path and streaming, and every enum
// value must have the same number. The official classes (protoc-gen-ts output) carry no
// descriptors, so their fields are read from their deserializers and property getters;
// package-lock.json pins the version this parsing was written against.
// Prints each difference and "schema: N passed, N failed"; exits 1 on any difference.
'use strict';

const fs = require('fs');
const path = require('path');
const desc = require('google-protobuf/google/protobuf/descriptor_pb.js');

const DIST = path.join(path.dirname(require.resolve('@gomomento/generated-types')), '.');
const official = fs
  .readdirSync(DIST)
  .filter((f) => f.endsWith('.js') && f !== 'index.js')
  .map((f) => require(path.join(DIST, f)));

function lookup(fullName) {
  for (const mod of official) {
    let o = mod;
    for (const part of fullName.split('.')) o = o == null ? undefined : o[part];
    if (o !== undefined) return o;
  }
  return undefined;
}

// field number -> property name, from the getters (getFieldWithDefault(this, N, ...),
// getWrapperField(this, Type, N), getRepeatedField(this, N), ...).
function fieldNames(cls) {
  const names = {};
  for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(cls.prototype))) {
    if (!d.get || name.startsWith('has_')) continue;
    const m = /pb_1\.Message\.get\w*Field\w*\(this, (?:[A-Za-z_][\w.]*, )?(\d+)/.exec(d.get.toString());
    if (m) names[Number(m[1])] = name;
  }
  return names;
}

// field number -> {type, repeated, msg} from the deserializer's switch.
function officialFields(cls) {
  const src = cls.deserialize.toString();
  const out = {};
  const re = /case (\d+):\s*([^;]*;)/g;
  let m;
  while ((m = re.exec(src))) {
    const st = m[2];
    const f = { repeated: /addToRepeated|readPacked/.test(st), msg: null };
    if (/reader\.readMessage\(/.test(st)) {
      f.type = 'message';
      f.msg = (/(\w+)\.deserialize\(reader\)/.exec(st) || [])[1] || '?';
    } else {
      const r = /reader\.read(?:Packed)?(\w+)\(/.exec(st);
      f.type = r ? r[1].toLowerCase() : '?';
    }
    out[Number(m[1])] = f;
  }
  return out;
}

// oneof groups as sorted "a,b" strings, from the constructor's one_of_decls.
function officialOneofs(cls) {
  const m = /_one_of_decls\.set\(this, (\[[\d,\s[\]]*\])\)/.exec(cls.toString());
  return m ? JSON.parse(m[1]).map((g) => g.sort((a, b) => a - b).join(',')) : [];
}

const T = desc.FieldDescriptorProto.Type;
const TYPE = {};
for (const [k, v] of Object.entries(T)) TYPE[v] = k.replace('TYPE_', '').toLowerCase();
const REPEATED = desc.FieldDescriptorProto.Label.LABEL_REPEATED;

let passed = 0;
const problems = [];
function check(ok, what) {
  if (ok) passed++;
  else problems.push(what);
}

function compareMessage(full, d) {
  const cls = lookup(full);
  if (typeof cls !== 'function' || typeof cls.deserialize !== 'function') {
    check(false, `${full}: no official message of that name`);
    return;
  }
  const off = officialFields(cls);
  const names = fieldNames(cls);
  const seen = new Set();
  const groups = {};
  for (const fd of d.getFieldList()) {
    const n = fd.getNumber();
    seen.add(n);
    const o = off[n];
    const label = `${full} field ${n} (${fd.getName()})`;
    if (!o) {
      check(false, `${label}: the official message has no field ${n}`);
      continue;
    }
    const ourType = TYPE[fd.getType()];
    const ourRep = fd.getLabel() === REPEATED;
    const ourMsg = ourType === 'message' ? fd.getTypeName().split('.').pop() : null;
    check(names[n] === fd.getName(), `${label}: official name is ${names[n]}`);
    check(ourType === o.type, `${label}: ours is ${ourType}, official ${o.type}`);
    check(ourRep === o.repeated, `${label}: repeated ${ourRep} vs official ${o.repeated}`);
    if (ourMsg) check(ourMsg === o.msg, `${label}: type ${ourMsg}, official ${o.msg}`);
    if (fd.hasOneofIndex() && !fd.getProto3Optional()) {
      (groups[fd.getOneofIndex()] = groups[fd.getOneofIndex()] || []).push(n);
    }
  }
  for (const n of Object.keys(off).map(Number)) {
    // Fields we leave out are allowed (we declare only what we use), but say so.
    if (!seen.has(n)) console.log(`note: ${full} field ${n} (${names[n]}) is not in our proto`);
  }
  const ours = Object.values(groups).map((g) => g.sort((a, b) => a - b).join(','));
  const theirs = new Set(officialOneofs(cls));
  for (const g of ours) check(theirs.has(g), `${full}: our oneof {${g}} is not an official oneof`);
}

function walk(prefix, msgs, out) {
  for (const d of msgs) {
    const full = `${prefix}.${d.getName()}`;
    out.push([full, d]);
    walk(full, d.getNestedTypeList(), out);
  }
}

function officialMethods() {
  const paths = new Map();
  const scan = (o, depth) => {
    if (!o || depth > 4) return;
    for (const v of Object.values(o)) {
      if (typeof v === 'function' && v.definition) {
        for (const m of Object.values(v.definition)) paths.set(m.path, m);
      } else if (typeof v === 'object') scan(v, depth + 1);
    }
  };
  official.forEach((m) => scan(m, 0));
  return paths;
}

const set = desc.FileDescriptorSet.deserializeBinary(fs.readFileSync(process.argv[2]));
const methods = officialMethods();
for (const f of set.getFileList()) {
  const pkg = f.getPackage();
  const msgs = [];
  walk(pkg, f.getMessageTypeList(), msgs);
  for (const [full, d] of msgs) compareMessage(full, d);
  for (const s of f.getServiceList()) {
    for (const m of s.getMethodList()) {
      const p = `/${pkg}.${s.getName()}/${m.getName()}`;
      const o = methods.get(p);
      check(o !== undefined, `${p}: no official method with that path`);
      if (o) check(!!o.responseStream === !!m.getServerStreaming(), `${p}: streaming differs`);
    }
  }
  for (const e of f.getEnumTypeList()) {
    const full = `${pkg}.${e.getName()}`;
    const o = lookup(full);
    for (const v of e.getValueList()) {
      const got = o ? o[v.getName()] : undefined;
      check(got === v.getNumber(), `${full}.${v.getName()} = ${v.getNumber()}, official ${got}`);
    }
  }
}
for (const p of problems) console.log(`MISMATCH ${p}`);
console.log(`schema: ${passed} passed, ${problems.length} failed`);
process.exit(problems.length === 0 && passed > 0 ? 0 : 1);
