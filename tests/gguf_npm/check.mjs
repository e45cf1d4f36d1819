// Reads a GGUF file written by libqnoise with the independent reader
// @huggingface/gguf and compares it with the JSON description the writer
// produced: metadata keys, types and values, tensor names, shapes, types,
// offsets and bytes, and the CRC32C checksums (recomputed here).
// Usage: node check.mjs NPM_DIR FILE.gguf EXPECTED.json
// Exit: 0 all agree, 1 a mismatch (each one printed), 77 reader missing.
// SPDX-License-Identifier: MIT
import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [npmDir, ggufPath, jsonPath] = process.argv.slice(2);
const pkgDir = path.join(path.resolve(npmDir), "node_modules", "@huggingface", "gguf");
const pkgJson = path.join(pkgDir, "package.json");
if (!existsSync(pkgJson)) {
  console.log(`skipped: @huggingface/gguf not installed (npm install --prefix ${npmDir} @huggingface/gguf@0.4.6)`);
  process.exit(77);
}
const pkg = JSON.parse(readFileSync(pkgJson, "utf8"));
const entry = pkg.exports?.["."]?.import ?? pkg.module ?? pkg.main;
const mod = await import(pathToFileURL(path.join(pkgDir, entry)).href);
const gguf = mod.gguf ?? mod.default?.gguf;
console.log(`reader: @huggingface/gguf ${pkg.version} on node ${process.versions.node}`);
if (pkg.version !== "0.4.6") console.log(`note: tested with 0.4.6, found ${pkg.version}`);

const T = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 };
const expected = JSON.parse(readFileSync(jsonPath, "utf8"));
const file = readFileSync(ggufPath);
const res = await gguf(path.resolve(ggufPath), { allowLocalFile: true, typedMetadata: true });

const problems = [];
let checks = 0;
function expect(ok, what) {
  checks++;
  if (!ok) problems.push(what);
}
const show = (v) => JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x));

function sameScalar(type, want, got) {
  switch (type) {
    case T.U64:
    case T.I64:
      return typeof got === "bigint" && got === BigInt(want);
    case T.F32:
      return typeof got === "number" && got === Math.fround(want);
    default:
      return got === want;
  }
}

// CRC32C (Castagnoli, reflected 0x82F63B78), bit by bit: an oracle independent of the C table.
function crc32c(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

// header
expect(res.metadata.version === 3, `version: got ${show(res.metadata.version)}, want 3`);
expect(res.littleEndian === true, "file not read as little-endian");
expect(res.metadata.tensor_count === BigInt(expected.tensors.length),
  `tensor_count: got ${show(res.metadata.tensor_count)}, want ${expected.tensors.length}`);
expect(res.metadata.kv_count === BigInt(expected.metadata.length),
  `kv_count: got ${show(res.metadata.kv_count)}, want ${expected.metadata.length}`);

// metadata
const typed = res.typedMetadata;
const header = new Set(["version", "tensor_count", "kv_count"]);
const seen = Object.keys(typed).filter((k) => !header.has(k));
const wantKeys = expected.metadata.map((m) => m.key);
expect(show(seen.slice().sort()) === show(wantKeys.slice().sort()),
  `keys: got ${show(seen)}, want ${show(wantKeys)}`);
for (const m of expected.metadata) {
  const got = typed[m.key];
  if (!got) {
    expect(false, `key ${m.key}: missing`);
    continue;
  }
  expect(got.type === m.type, `key ${m.key}: type ${got.type}, want ${m.type}`);
  if (m.type === T.ARRAY) {
    expect(got.subType === m.subType, `key ${m.key}: element type ${got.subType}, want ${m.subType}`);
    const ok = Array.isArray(got.value) && got.value.length === m.value.length &&
      got.value.every((v, i) => sameScalar(m.subType, m.value[i], v));
    expect(ok, `key ${m.key}: value ${show(got.value)}, want ${show(m.value)}`);
  } else {
    expect(sameScalar(m.type, m.value, got.value), `key ${m.key}: value ${show(got.value)}, want ${show(m.value)}`);
  }
}

// tensors
const dataStart = Number(res.tensorDataOffset);
expect(dataStart % expected.alignment === 0, `data section at ${dataStart}, not a multiple of ${expected.alignment}`);
expect(res.tensorInfos.length === expected.tensors.length,
  `tensor count: got ${res.tensorInfos.length}, want ${expected.tensors.length}`);
const crcs = typed["qnoise.tensor_crc32c"]?.value ?? [];
expected.tensors.forEach((t, i) => {
  const got = res.tensorInfos[i];
  if (!got) return;
  expect(got.name === t.name, `tensor #${i}: name ${show(got.name)}, want ${show(t.name)}`);
  expect(got.n_dims === t.shape.length, `tensor ${t.name}: n_dims ${got.n_dims}, want ${t.shape.length}`);
  expect(show(got.shape) === show(t.shape.map((d) => BigInt(d))),
    `tensor ${t.name}: shape ${show(got.shape)}, want ${show(t.shape)}`);
  expect(got.dtype === t.type, `tensor ${t.name}: dtype ${got.dtype}, want ${t.type}`);
  expect(got.offset === BigInt(t.offset), `tensor ${t.name}: offset ${show(got.offset)}, want ${t.offset}`);
  expect(Number(got.offset) % expected.alignment === 0, `tensor ${t.name}: offset ${got.offset} not aligned`);
  const start = dataStart + Number(got.offset);
  const bytes = file.subarray(start, start + t.hex.length / 2);
  expect(bytes.toString("hex") === t.hex, `tensor ${t.name}: bytes at ${start} differ from what was written`);
  const c = crc32c(bytes);
  expect(c === t.crc32c, `tensor ${t.name}: CRC32C recomputed ${c}, writer said ${t.crc32c}`);
  expect(crcs[i] === c, `tensor ${t.name}: qnoise.tensor_crc32c[${i}] = ${crcs[i]}, recomputed ${c}`);
});

for (const p of problems) console.log(`MISMATCH: ${p}`);
console.log(`gguf-npm: ${checks - problems.length} passed, ${problems.length} failed`);
process.exit(problems.length ? 1 : 0);
