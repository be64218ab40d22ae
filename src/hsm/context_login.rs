//! Whether a key logs in once more for each signature: PKCS#11 asks, for a private key with
//! `CKA_ALWAYS_AUTHENTICATE` true, for `C_Login(CKU_CONTEXT_SPECIFIC)` with the PIN between
//! `C_SignInit` and `C_Sign`, on the same session, every time. Decided once per key, when it
//! is opened, from the attribute and `[hsm] context_login`; and the words for a token that
//! wants a login certgate did not make, or refuses one it made.
//!
//! What this module must not do: call PKCS#11 or see the PIN (see `signer` and `pool`).

use crate::config::ContextLogin;

/// A key's `CKA_ALWAYS_AUTHENTICATE` and the setting it is opened under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyLogin {
    pub(crate) setting: ContextLogin,
    /// `CKA_ALWAYS_AUTHENTICATE` as the token reported it when the key was opened.
    pub(crate) attribute: bool,
}

impl KeyLogin {
    /// Whether each signature makes the context-specific login.
    pub(crate) fn per_signature(self) -> bool {
        match self.setting {
            ContextLogin::Auto => self.attribute,
            ContextLogin::Always => true,
            ContextLogin::Never => false,
        }
    }

    /// Why the key cannot sign when the token refused `C_Sign` as "not logged in" on a
    /// session that is still logged in, so it wants the login for the key alone.
    pub(crate) fn missing_reason(self) -> String {
        if self.attribute {
            format!(
                "it has CKA_ALWAYS_AUTHENTICATE and the token wants a context-specific login \
                 before each signature, which [hsm] context_login = \"{}\" turns off (use \
                 \"auto\")",
                self.setting.as_str()
            )
        } else {
            "the token wants a context-specific login before each signature although the key \
             does not report CKA_ALWAYS_AUTHENTICATE (set [hsm] context_login = \"always\")"
                .to_owned()
        }
    }

    /// Why the key cannot sign when the token refused the context-specific login itself with
    /// `code` (`CKR_OPERATION_NOT_INITIALIZED`: no login wanted for this key;
    /// `CKR_USER_TYPE_INVALID`: the token knows no such login).
    pub(crate) fn refused_reason(self, code: &str) -> String {
        if self.attribute {
            format!(
                "it has CKA_ALWAYS_AUTHENTICATE, but the token does not accept a \
                 context-specific login ({code}); if the token signs without one (openCryptoki's \
                 soft token does), set [hsm] context_login = \"never\""
            )
        } else {
            format!(
                "the token refuses a context-specific login for it ({code}) and the key does \
                 not report CKA_ALWAYS_AUTHENTICATE; [hsm] context_login = \"{}\" asks for one \
                 (use \"auto\")",
                self.setting.as_str()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(setting: ContextLogin, attribute: bool) -> KeyLogin {
        KeyLogin { setting, attribute }
    }

    #[test]
    fn auto_follows_the_attribute_and_the_others_ignore_it() {
        for attribute in [false, true] {
            assert_eq!(
                key(ContextLogin::Auto, attribute).per_signature(),
                attribute
            );
            assert!(key(ContextLogin::Always, attribute).per_signature());
            assert!(!key(ContextLogin::Never, attribute).per_signature());
        }
    }

    #[test]
    fn the_reasons_name_the_attribute_and_the_setting_to_change() {
        let never = key(ContextLogin::Never, true).missing_reason();
        assert!(never.contains("CKA_ALWAYS_AUTHENTICATE"), "{never}");
        assert!(
            never.contains("context_login = \"never\" turns off"),
            "{never}"
        );
        let silent = key(ContextLogin::Auto, false).missing_reason();
        assert!(
            silent.contains("does not report CKA_ALWAYS_AUTHENTICATE"),
            "{silent}"
        );
        assert!(silent.contains("context_login = \"always\""), "{silent}");
        let unwanted =
            key(ContextLogin::Always, false).refused_reason("CKR_OPERATION_NOT_INITIALIZED");
        assert!(
            unwanted.contains("CKR_OPERATION_NOT_INITIALIZED"),
            "{unwanted}"
        );
        assert!(
            unwanted.contains("context_login = \"always\" asks"),
            "{unwanted}"
        );
        let unknown = key(ContextLogin::Auto, true).refused_reason("CKR_USER_TYPE_INVALID");
        assert!(unknown.contains("CKR_USER_TYPE_INVALID"), "{unknown}");
        assert!(unknown.contains("context_login = \"never\""), "{unknown}");
    }
}
