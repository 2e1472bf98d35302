// The README's JavaScript check of DNI-Signature (Node 18+, no dependencies), run by
// test_verify_snippet.py against bodies the service signed. Keep the two in step.
const crypto = require("node:crypto");

function verifyDniSignature(rawBody, header, secret, toleranceSeconds = 300) {
  const parts = Object.create(null);
  const signatures = [];
  for (const item of (header || "").split(",")) {
    const [name, value] = item.trim().split("=", 2);
    if (name === "t") parts.t = value;
    if (name === "v1" && value) signatures.push(value);
  }
  if (!/^\d+$/.test(parts.t || "") || signatures.length === 0) return false;
  const expected = crypto.createHmac("sha256", secret)
    .update(`${parts.t}.`).update(rawBody).digest("hex");
  const matches = signatures.some((given) => given.length === expected.length &&
    crypto.timingSafeEqual(Buffer.from(given), Buffer.from(expected)));
  const age = Math.abs(Date.now() / 1000 - Number(parts.t));
  return matches && age <= toleranceSeconds;
}

module.exports = { verifyDniSignature };

if (require.main === module) {  // node verify_snippet.js <secret> <header> < body
  const chunks = [];
  process.stdin.on("data", (c) => chunks.push(c));
  process.stdin.on("end", () => {
    const ok = verifyDniSignature(Buffer.concat(chunks), process.argv[3], process.argv[2]);
    process.stdout.write(ok ? "valid\n" : "invalid\n");
  });
}
