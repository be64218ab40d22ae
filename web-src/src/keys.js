// Key pair and PKCS#10 CSR made in the page with WebCrypto. Owns key
// generation and the CSR; it must not send anything anywhere.
import * as x509 from "@peculiar/x509";

const EC_KEY = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING = { name: "ECDSA", hash: "SHA-256" };

// Extractable, because the private key has to go into the PKCS#12 file.
export async function generateKeyPair() {
  return crypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]);
}

// The CA builds the real subject from its own records; CN=<login> only
// makes the request readable for a person looking at it.
export async function buildCsrPem(keys, commonName) {
  x509.cryptoProvider.set(crypto);
  const name = commonName ? [{ CN: [commonName] }] : [];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name,
    keys,
    signingAlgorithm: SIGNING,
  });
  return csr.toString("pem");
}
