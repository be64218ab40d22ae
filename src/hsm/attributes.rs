//! The security-relevant attributes of a private key, as the token reports them, and the
//! judgement whether such a key may serve as a CA key.
//!
//! An attribute the token does not report counts as its unsafe value (a key that does not
//! say it is sensitive is treated as not sensitive).
//!
//! What this module must not do: talk to the token (see `objects`).

use crate::keys::KeyAlgorithm;

/// Security-relevant attributes of a private key object, as the token reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyAttributes {
    /// `CKA_LABEL`.
    pub label: String,
    /// `CKA_ID`, hex.
    pub id_hex: String,
    /// The algorithm, when it is one the CA supports.
    pub algorithm: Option<KeyAlgorithm>,
    /// `CKA_TOKEN`: stored in the token, not a session object.
    pub token: bool,
    /// `CKA_PRIVATE`: usable only after login.
    pub private: bool,
    /// `CKA_SENSITIVE`: the key value cannot be read.
    pub sensitive: bool,
    /// `CKA_ALWAYS_SENSITIVE`: it never could be read.
    pub always_sensitive: bool,
    /// `CKA_EXTRACTABLE`: it can be wrapped out of the token.
    pub extractable: bool,
    /// `CKA_NEVER_EXTRACTABLE`: it never could be.
    pub never_extractable: bool,
    /// `CKA_LOCAL`: generated in the token.
    pub local: bool,
    /// `CKA_DECRYPT`.
    pub decrypt: bool,
    /// `CKA_UNWRAP`.
    pub unwrap: bool,
    /// `CKA_DERIVE`.
    pub derive: bool,
    /// `CKA_ALWAYS_AUTHENTICATE`: each signature needs a context-specific login. Not a
    /// safety matter: absent counts as false, as PKCS#11 defaults it.
    pub always_authenticate: bool,
}

impl KeyAttributes {
    /// Why this key must not be used as a CA key, if it must not: it can leave the token,
    /// can be read, is not kept in the token behind the login, or serves other purposes than
    /// signing. Keys that were once extractable or readable (imported from a backup) are
    /// allowed; [`Self::history_warning`] names them.
    pub fn unsafe_reason(&self) -> Option<String> {
        let mut reasons = Vec::new();
        if self.extractable {
            reasons.push("it is extractable (CKA_EXTRACTABLE is true)");
        }
        if !self.sensitive {
            reasons.push("it is not sensitive (CKA_SENSITIVE is false)");
        }
        if !self.token {
            reasons.push("it is a session object (CKA_TOKEN is false)");
        }
        if !self.private {
            reasons.push("it is usable without login (CKA_PRIVATE is false)");
        }
        if self.decrypt {
            reasons.push("it may decrypt (CKA_DECRYPT is true)");
        }
        if self.unwrap {
            reasons.push("it may unwrap keys (CKA_UNWRAP is true)");
        }
        if self.derive {
            reasons.push("it may derive keys (CKA_DERIVE is true)");
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The yes/no attributes by their names without `CKA_`, in the order `hsm info` shows
    /// them.
    pub fn flags(&self) -> [(&'static str, bool); 11] {
        [
            ("token", self.token),
            ("private", self.private),
            ("sensitive", self.sensitive),
            ("always_sensitive", self.always_sensitive),
            ("extractable", self.extractable),
            ("never_extractable", self.never_extractable),
            ("local", self.local),
            ("decrypt", self.decrypt),
            ("unwrap", self.unwrap),
            ("derive", self.derive),
            ("always_authenticate", self.always_authenticate),
        ]
    }

    /// A note for the log when the key is safe now but was not always.
    pub fn history_warning(&self) -> Option<&'static str> {
        match (self.always_sensitive, self.never_extractable) {
            (true, true) => None,
            (false, true) => {
                Some("the key was readable at some time (CKA_ALWAYS_SENSITIVE is false)")
            }
            (true, false) => {
                Some("the key was extractable at some time (CKA_NEVER_EXTRACTABLE is false)")
            }
            (false, false) => {
                Some("the key was readable and extractable at some time (imported or copied)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> KeyAttributes {
        KeyAttributes {
            label: "ca".into(),
            id_hex: "01".into(),
            algorithm: Some(KeyAlgorithm::EcP256),
            token: true,
            private: true,
            sensitive: true,
            always_sensitive: true,
            extractable: false,
            never_extractable: true,
            local: true,
            decrypt: false,
            unwrap: false,
            derive: false,
            always_authenticate: false,
        }
    }

    #[test]
    fn a_ceremony_key_is_safe() {
        assert_eq!(good().unsafe_reason(), None);
        assert_eq!(good().history_warning(), None);
    }

    #[test]
    fn each_unsafe_attribute_is_named() {
        type Spoil = fn(&mut KeyAttributes);
        let cases: [(Spoil, &str); 7] = [
            (|a| a.extractable = true, "CKA_EXTRACTABLE"),
            (|a| a.sensitive = false, "CKA_SENSITIVE"),
            (|a| a.token = false, "CKA_TOKEN"),
            (|a| a.private = false, "CKA_PRIVATE"),
            (|a| a.decrypt = true, "CKA_DECRYPT"),
            (|a| a.unwrap = true, "CKA_UNWRAP"),
            (|a| a.derive = true, "CKA_DERIVE"),
        ];
        for (spoil, name) in cases {
            let mut a = good();
            spoil(&mut a);
            let reason = a.unsafe_reason().expect("refused");
            assert!(reason.contains(name), "{reason}");
        }
    }

    #[test]
    fn a_key_asking_for_a_login_per_signature_is_safe() {
        let mut a = good();
        a.always_authenticate = true;
        assert_eq!(a.unsafe_reason(), None);
        assert!(a.flags().contains(&("always_authenticate", true)));
    }

    #[test]
    fn an_imported_key_is_allowed_with_a_warning() {
        let mut a = good();
        a.never_extractable = false;
        a.always_sensitive = false;
        assert_eq!(a.unsafe_reason(), None);
        assert!(a.history_warning().is_some());
    }
}
