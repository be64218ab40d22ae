// Password-protected PKCS#12 built in the page with pkijs. Owns the file
// layout: shrouded key bag, certificate bags, MAC. It must not keep the
// password or the key after it returns.
//
// Layout as OpenSSL 3 writes it, which Windows (10 and later), macOS and
// NSS (Chromium, Firefox) import: the key in a PKCS8ShroudedKeyBag, the
// certificates in a password-encrypted SafeContents, both PBES2 with
// PBKDF2-HMAC-SHA256 and AES-256-CBC, integrity by an HMAC-SHA256 MAC.
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

const ITERATIONS = 100000;
const PBES2 = {
  contentEncryptionAlgorithm: { name: "AES-CBC", length: 256 },
  hmacHashAlgorithm: "SHA-256",
  iterationCount: ITERATIONS,
};

const OID_FRIENDLY_NAME = "1.2.840.113549.1.9.20";
const OID_LOCAL_KEY_ID = "1.2.840.113549.1.9.21";
const OID_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2";
const OID_CERT_BAG = "1.2.840.113549.1.12.10.1.3";
const OID_X509_CERTIFICATE = "1.2.840.113549.1.9.22.1";

let engineReady = false;
function ensureEngine() {
  if (!engineReady) {
    pkijs.setEngine("certgate", new pkijs.CryptoEngine({ name: "certgate", crypto }));
    engineReady = true;
  }
}

function parseCertificate(der) {
  const asn1 = asn1js.fromBER(der);
  if (asn1.offset === -1) {
    throw new Error("certificate is not DER");
  }
  return new pkijs.Certificate({ schema: asn1.result });
}

function toArrayBuffer(bytes) {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

// The certificate bytes go in exactly as the CA signed them (no re-encoding).
function certBag(der, bagAttributes) {
  parseCertificate(der);
  return new pkijs.SafeBag({
    bagId: OID_CERT_BAG,
    bagValue: new pkijs.CertBag({
      certId: OID_X509_CERTIFICATE,
      certValue: new asn1js.OctetString({ valueHex: der }),
    }),
    ...(bagAttributes ? { bagAttributes } : {}),
  });
}

// The public key of the certificate must be the one made in this page:
// anything else would be useless to the customer, or worse.
export function certificateMatchesKey(certificateDer, spkiDer) {
  const cert = parseCertificate(certificateDer);
  const certSpki = new Uint8Array(cert.subjectPublicKeyInfo.toSchema().toBER(false));
  const ours = new Uint8Array(spkiDer);
  if (certSpki.length !== ours.length) {
    return false;
  }
  return certSpki.every((b, i) => b === ours[i]);
}

export async function buildPkcs12({ privateKey, certificateDer, chainDers, friendlyName, password }) {
  ensureEngine();
  const passwordBytes = toArrayBuffer(new TextEncoder().encode(password));
  const localKeyId = await crypto.subtle.digest("SHA-1", certificateDer);

  const bagAttributes = [
    new pkijs.Attribute({
      type: OID_FRIENDLY_NAME,
      values: [new asn1js.BmpString({ value: friendlyName })],
    }),
    new pkijs.Attribute({
      type: OID_LOCAL_KEY_ID,
      values: [new asn1js.OctetString({ valueHex: localKeyId })],
    }),
  ];

  const pkcs8 = await crypto.subtle.exportKey("pkcs8", privateKey);
  const keyInfo = new pkijs.PrivateKeyInfo({ schema: asn1js.fromBER(pkcs8).result });
  const shrouded = new pkijs.PKCS8ShroudedKeyBag({ parsedValue: keyInfo });
  await shrouded.makeInternalValues({ password: passwordBytes, ...PBES2 });

  const keyBag = new pkijs.SafeBag({
    bagId: OID_SHROUDED_KEY_BAG,
    bagValue: shrouded,
    bagAttributes,
  });
  const certBags = [certBag(certificateDer, bagAttributes), ...chainDers.map((der) => certBag(der))];

  const authenticatedSafe = new pkijs.AuthenticatedSafe({
    parsedValue: {
      safeContents: [
        { privacyMode: 0, value: new pkijs.SafeContents({ safeBags: [keyBag] }) },
        { privacyMode: 1, value: new pkijs.SafeContents({ safeBags: certBags }) },
      ],
    },
  });
  await authenticatedSafe.makeInternalValues({
    safeContents: [{}, { password: passwordBytes, ...PBES2 }],
  });

  const pfx = new pkijs.PFX({
    parsedValue: { integrityMode: 0, authenticatedSafe },
  });
  await pfx.makeInternalValues({
    password: passwordBytes,
    iterations: ITERATIONS,
    pbkdf2HashAlgorithm: { name: "SHA-256" },
    hmacHashAlgorithm: "SHA-256",
  });
  return pfx.toSchema().toBER(false);
}

// The certificate's CN, used as file and friendly name when the page does
// not know the login ID.
export function commonNameOf(certificateDer) {
  const cert = parseCertificate(certificateDer);
  const cn = cert.subject.typesAndValues.find((tv) => tv.type === "2.5.4.3");
  return cn ? cn.value.valueBlock.value : "";
}
