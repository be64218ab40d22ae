// PEM <-> DER conversion. Owns text encoding of DER blobs only; it must not
// parse ASN.1.

export function derToPem(label, der) {
  const bytes = new Uint8Array(der);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 1) {
    binary += String.fromCharCode(bytes[i]);
  }
  const b64 = btoa(binary);
  const lines = b64.match(/.{1,64}/g) || [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

export function pemToDer(pem, label) {
  if (typeof pem !== "string") {
    throw new Error("PEM text expected");
  }
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`);
  const match = pem.match(re);
  if (!match) {
    throw new Error(`no ${label} PEM block`);
  }
  const binary = atob(match[1].replace(/\s+/g, ""));
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) {
    out[i] = binary.charCodeAt(i);
  }
  return out.buffer;
}
