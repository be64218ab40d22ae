//! The one way to a certificate: [`Lifecycle::enroll`] with an [`Authorization`] and a CSR.
//!
//! Every enrollment protocol (the pages' JSON calls, EST, `certgate cert sign`; SCEP later,
//! whose challenge password is the issuance code) is an adapter that turns its request into
//! these two and the answer into its own format. The rules live here and in
//! [`rules`](super::rules), never in an adapter, so no protocol can skip one.

use serde_json::json;
use tracing::Instrument;

use crate::audit::{Actor, Outcome};
use crate::ca::{ClientProfile, ClientSubject, SignatureKind, csr};
use crate::store::{
    Audience, CertRecord, CertStatus, CodeClaim, CodeRefusal, Redeemed, StoreError, User,
    staff_name,
};

use super::codes::hash_code;
use super::error::LifecycleError;
use super::intents::{self, DiscardReason, IntentFor};
use super::rules::{self, Refusal, RenewalWindow, could_be_login, login_subject};
use super::service::{Lifecycle, check_enabled, format_date};

/// What entitles a caller to a certificate. Its `Debug` leaves the code out.
#[derive(Clone, Copy)]
pub enum Authorization<'a> {
    /// A first issuance (or one after a re-issue): the login ID and the one-time issuance
    /// code staff or the contract administrator authorized. `requester` is who is audited
    /// as asking (the client's address on the web, the staff member at the command line).
    IssuanceCode {
        login: &'a str,
        code: &'a str,
        requester: &'a Actor,
    },
    /// A renewal, authenticated by the certificate being renewed (its serial as the store
    /// keeps it). The certificate's login ID is audited as asking.
    CurrentCertificate { serial: &'a str },
}

impl std::fmt::Debug for Authorization<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::IssuanceCode {
                login, requester, ..
            } => f
                .debug_struct("IssuanceCode")
                .field("login", login)
                .field("requester", requester)
                .finish_non_exhaustive(),
            Self::CurrentCertificate { serial } => f
                .debug_struct("CurrentCertificate")
                .field("serial", serial)
                .finish(),
        }
    }
}

impl Lifecycle {
    /// Issues a certificate for the public key of `csr` (PEM or DER PKCS#10) to whoever
    /// `authorization` names, applying the scheme's rules; refusals are audited.
    ///
    /// With an issuance code, a request repeated with the same code and key returns the
    /// same certificate. A renewal needs a new key and an open renewal window, and
    /// supersedes the renewed certificate.
    ///
    /// This is the customers' way in (pages, EST, `certgate cert sign`): a staff login ID
    /// or certificate is refused as unknown. Staff ways in call [`Lifecycle::enroll_for`].
    pub async fn enroll(
        &self,
        authorization: Authorization<'_>,
        csr: &[u8],
    ) -> Result<CertRecord, LifecycleError> {
        self.enroll_for(Audience::Customer, authorization, csr)
            .await
    }

    /// [`Lifecycle::enroll`] on a way in that serves `audience`: the login ID (or the
    /// certificate renewed) must belong to it, else the request is refused as for an
    /// unknown login ID and the real reason audited.
    pub async fn enroll_for(
        &self,
        audience: Audience,
        authorization: Authorization<'_>,
        csr: &[u8],
    ) -> Result<CertRecord, LifecycleError> {
        let kind = match authorization {
            Authorization::IssuanceCode { .. } => "obtain",
            Authorization::CurrentCertificate { .. } => "renew",
        };
        let span = tracing::debug_span!(
            "issuance",
            kind,
            outcome = tracing::field::Empty,
            error = tracing::field::Empty
        );
        let out = async move {
            match authorization {
                Authorization::IssuanceCode {
                    login,
                    code,
                    requester,
                } => self.obtain(audience, requester, login, code, csr).await,
                Authorization::CurrentCertificate { serial } => {
                    self.renew(audience, serial, csr).await
                }
            }
        }
        .instrument(span.clone())
        .await;
        let outcome = out.as_ref().map_or_else(LifecycleError::code, |_| "issued");
        span.record("outcome", outcome);
        if out.is_err() {
            span.record("error", outcome);
        }
        self.outcomes().record(kind, outcome);
        out
    }

    /// Obtains a certificate with a login ID and issuance code (web page, EST, `cert sign`).
    /// A request repeated with the same code and key returns the same certificate.
    ///
    /// A fresh certificate, the redemption of the code and its `cert.obtain` audit record
    /// are committed in one transaction (shared with concurrent issuances) before it is
    /// returned; a repeat is audited as `cert.obtain.repeat` on its own.
    async fn obtain(
        &self,
        audience: Audience,
        actor: &Actor,
        login: &str,
        code: &str,
        csr_input: &[u8],
    ) -> Result<CertRecord, LifecycleError> {
        // Set when the refusal's audit entry was already committed with what it changed.
        let mut audited = false;
        match self
            .obtain_inner(audience, actor, login, code, csr_input, &mut audited)
            .await
        {
            Ok((cert, repeated)) => {
                if repeated {
                    self.audit_ok(
                        actor,
                        "cert.obtain.repeat",
                        login,
                        json!({"serial": cert.serial}),
                    )
                    .await;
                }
                Ok(cert)
            }
            Err(e) => {
                let action = match e {
                    LifecycleError::Code(_) => "code.refused",
                    _ => "cert.obtain",
                };
                // A login ID no one can have is the caller's text, not a subject: the audit
                // names it by a placeholder (no control characters, bidi marks or 64 KiB
                // strings from anonymous callers in the log).
                let subject = login_subject(login);
                let refused = if audited {
                    Err(e)
                } else {
                    self.refuse(actor, action, subject, e).await
                };
                // The audit has the precise reason; only staff at the command line see it
                // in the answer too (the web and EST callers are anonymous).
                if actor.is_bank() {
                    refused
                } else {
                    refused.map_err(LifecycleError::hide_login_state)
                }
            }
        }
    }

    async fn obtain_inner(
        &self,
        audience: Audience,
        actor: &Actor,
        login: &str,
        code: &str,
        csr_input: &[u8],
        audited: &mut bool,
    ) -> Result<(CertRecord, bool), LifecycleError> {
        let checked = tracing::debug_span!("csr.check").in_scope(|| csr::check(csr_input))?;
        let code_hash = hash_code(code);
        // User, contract and code in one read. Unknown login IDs (and a missing contract)
        // look like wrong codes from outside.
        let no_code = || LifecycleError::Code(crate::store::CodeRefusal::NoCode);
        if !could_be_login(login) {
            return Err(no_code());
        }
        let Some(subject) = self.store().issuance_subject(login).await? else {
            return Err(no_code());
        };
        match check_enabled(&subject.user, subject.contract_enabled) {
            Err(LifecycleError::NotFound(_)) => return Err(no_code()),
            checked => checked?,
        }
        let user = &subject.user;
        // Checked before the code is, and with nothing written: from outside, the other
        // audience's login ID is an unknown one.
        check_audience(audience, user)?;
        let now = self.now();
        // Only a wrong code is committed here (its attempt counter, with the refusal's
        // audit entry); an accepted code is redeemed below, in the transaction that stores
        // the certificate.
        let refusal_entry = |r: &CodeRefusal| {
            let e = LifecycleError::Code(*r);
            crate::audit::entry(
                now,
                actor,
                "code.refused",
                login,
                Outcome::Refused,
                json!({"code": e.code(), "reason": e.to_string()}),
            )
        };
        let claim = self
            .store()
            .claim_subject_code(
                &subject,
                &code_hash,
                &checked.spki_sha256,
                now,
                i64::from(self.settings().max_attempts),
                &refusal_entry,
            )
            .instrument(tracing::debug_span!("code.claim"))
            .await?;
        match claim {
            CodeClaim::Refused(r) => Err(LifecycleError::Code(r)),
            CodeClaim::CountedAndAudited(r) => {
                *audited = true;
                Err(LifecycleError::Code(r))
            }
            CodeClaim::AlreadyIssued(cert) => Ok((*cert, true)),
            CodeClaim::Fresh => {
                let record = self.sign(actor, user, &checked, now).await?;
                let audit = self.ok_entry(
                    actor,
                    "cert.obtain",
                    login,
                    json!({"serial": record.serial}),
                );
                let stored = self
                    .store()
                    .complete_issue_audited(&code_hash, &record, now, &[audit])
                    .instrument(tracing::debug_span!("store.write"))
                    .await;
                match stored {
                    // Its signature intent was completed in the same transaction.
                    Ok(Redeemed::Stored { .. }) => Ok((record, false)),
                    // A concurrent request with the same code and key won: its certificate
                    // is the answer, and the one signed here is discarded (and revoked).
                    Ok(Redeemed::AlreadyIssued(cert)) => {
                        self.discard(actor, &record, DiscardReason::LostRedemptionRace)
                            .await;
                        Ok((*cert, true))
                    }
                    Err(e) => {
                        let reason = match e {
                            // Redeemed meanwhile for another key, or no longer valid.
                            StoreError::Conflict(_) => DiscardReason::LostRedemptionRace,
                            _ => DiscardReason::StoreFailed,
                        };
                        self.discard(actor, &record, reason).await;
                        Err(e.into())
                    }
                }
            }
        }
    }

    /// Signs a certificate for `user` off the async executor (the HSM blocks), after its
    /// intent is recorded. The caller completes or discards the intent.
    async fn sign(
        &self,
        actor: &Actor,
        user: &User,
        checked: &csr::CheckedCsr,
        now: i64,
    ) -> Result<CertRecord, LifecycleError> {
        self.sign_traced(actor, user, checked, now)
            .instrument(tracing::debug_span!("certificate.sign"))
            .await
    }

    async fn sign_traced(
        &self,
        actor: &Actor,
        user: &User,
        checked: &csr::CheckedCsr,
        now: i64,
    ) -> Result<CertRecord, LifecycleError> {
        // One key, one holder: a key certified for another login ID, or reported
        // compromised, would let its certificates stand for each other.
        if let Some(conflict) = self
            .store()
            .key_conflict(&checked.spki_sha256, &user.login)
            .await?
        {
            tracing::warn!(
                target: "certgate::security",
                login = user.login,
                conflict = ?conflict,
                "a certificate request's key is not certified again"
            );
            return Err(rules::key_conflict_refusal(&conflict).into());
        }
        let intent = IntentFor {
            kind: SignatureKind::Client,
            subject: &user.login,
            spki_sha256: &checked.spki_sha256,
            not_after: self.authority().client_not_after(now),
        };
        let planned =
            intents::open_intent(self.store(), self.authority(), actor, intent, now).await?;
        let serial = planned.hex.clone();
        let authority = self.authority().clone();
        let checked = checked.clone();
        let login = user.login.clone();
        let contract = user.contract_id.clone();
        let org = self.settings().organization.clone();
        // The HSM's span belongs to this issuance, on the blocking thread too.
        let span = tracing::Span::current();
        let issued = tokio::task::spawn_blocking(move || {
            let _in_issuance = span.enter();
            // The profile follows the stored user, never the CSR.
            let (profile, common_name) =
                match (Audience::of_contract(&contract), staff_name(&login)) {
                    (Audience::Staff, Some(name)) => (ClientProfile::Staff, name),
                    _ => (ClientProfile::Customer, login.as_str()),
                };
            let subject = ClientSubject {
                login: common_name,
                contract_id: &contract,
                organization: &org,
                profile,
            };
            authority.issue_client(planned, &checked, &subject, now)
        })
        .await
        .map_err(|e| LifecycleError::Internal(format!("signing task failed: {e}")))
        .and_then(|signed| signed.map_err(LifecycleError::from));
        let issued = match issued {
            Ok(issued) => issued,
            Err(e) => {
                let reason = DiscardReason::SigningFailed;
                intents::discard_logged(self.store(), actor, &serial, reason, None, now).await;
                return Err(e);
            }
        };
        Ok(CertRecord {
            serial: issued.serial,
            login: user.login.clone(),
            contract_id: user.contract_id.clone(),
            ca_id: self.authority().ca_id(),
            der: issued.der,
            sha256: issued.sha256,
            spki_sha256: issued.spki_sha256,
            not_before: issued.not_before,
            not_after: issued.not_after,
            status: CertStatus::Current,
            superseded_at: None,
            revoked_at: None,
            revocation_reason: None,
            first_used_at: None,
            created_at: now,
        })
    }

    /// Discards the signed, never handed out `record` (its serial is revoked from then).
    async fn discard(&self, actor: &Actor, record: &CertRecord, reason: DiscardReason) {
        let validity = Some((record.not_before, record.not_after));
        let (store, now) = (self.store(), self.now());
        intents::discard_logged(store, actor, &record.serial, reason, validity, now).await;
    }

    /// Renews the certificate `current_serial` (authenticated by it) with a new key, or the
    /// same one when `[renewal] allow_same_key` is on.
    async fn renew(
        &self,
        audience: Audience,
        current_serial: &str,
        csr_input: &[u8],
    ) -> Result<CertRecord, LifecycleError> {
        let old = self
            .store()
            .certificate(current_serial)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(format!("certificate {current_serial}")))?;
        let actor = Actor::User(old.login.clone());
        let result = async {
            if Audience::of_contract(&old.contract_id) != audience {
                return Err(Refusal::new(
                    "wrong_audience",
                    "this certificate is not renewed here",
                )
                .into());
            }
            if old.status != CertStatus::Current {
                return Err(Refusal::new(
                    "not_current",
                    "only the current certificate can be renewed",
                )
                .into());
            }
            let now = self.now();
            // One reading of the settings for the whole renewal (a reload may replace them).
            let settings = self.settings();
            match rules::renewal_window(
                old.not_after,
                now,
                settings.renewal_window_days,
                settings.renewal_grace_days,
            ) {
                RenewalWindow::Open => {}
                RenewalWindow::NotYet { opens_at } => {
                    return Err(Refusal::new(
                        "renewal_not_open",
                        format!("renewal opens on {} (UTC)", format_date(opens_at)),
                    )
                    .into());
                }
                RenewalWindow::Closed => {
                    return Err(Refusal::new(
                        "renewal_closed",
                        "this certificate expired too long ago to be renewed; please ask your administrator or the bank to re-issue it",
                    )
                    .into());
                }
            }
            let checked = tracing::debug_span!("csr.check").in_scope(|| csr::check(csr_input))?;
            rules::renewal_key_allowed(
                &old.spki_sha256,
                &checked.spki_sha256,
                settings.allow_same_key,
            )?;
            let user = self.enabled_user(&old.login).await?;
            let record = self.sign(&actor, &user, &checked, now).await?;
            // The renewal and its audit record commit together.
            let audit = self.ok_entry(
                &actor,
                "cert.renew",
                &old.login,
                json!({"old": old.serial, "new": record.serial}),
            );
            if let Err(e) = self
                .store()
                .complete_renewal_audited(&old.serial, &record, now, &[audit])
                .instrument(tracing::debug_span!("store.write"))
                .await
            {
                self.discard(&actor, &record, DiscardReason::StoreFailed).await;
                return Err(e.into());
            }
            // Its signature intent was completed in the same transaction.
            Ok(record)
        }
        .await;
        match result {
            Err(e) => self.refuse(&actor, "cert.renew", &old.login, e).await,
            done => done,
        }
    }
}

/// Refuses a login ID that does not belong to the way in's `audience` (audited as
/// `staff_login` or `not_staff`; answered to anonymous callers as an unknown login ID).
pub(super) fn check_audience(audience: Audience, user: &User) -> Result<(), LifecycleError> {
    match (audience, Audience::of_contract(&user.contract_id)) {
        (Audience::Customer, Audience::Staff) => Err(Refusal::new(
            "staff_login",
            format!(
                "login ID {:?} is a staff member's: its certificate is issued by `certgate staff cert sign` or the staff console",
                user.login
            ),
        )
        .into()),
        (Audience::Staff, Audience::Customer) => Err(Refusal::new(
            "not_staff",
            format!("login ID {:?} is not a staff member's", user.login),
        )
        .into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_login_shaped_text_is_an_audit_subject() {
        for ok in ["alice", "a.b_c-d@corp", "staff:ito"] {
            assert!(could_be_login(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "alice\u{202e}",
            "\u{1b}[31mEVIL",
            "a b",
            "<script>",
            "staff:",
            long.as_str(),
        ] {
            assert!(!could_be_login(bad), "{bad:?}");
        }
    }

    #[test]
    fn an_authorization_never_shows_its_code() {
        let requester = Actor::Anonymous("192.0.2.1".into());
        let shown = format!(
            "{:?}",
            Authorization::IssuanceCode {
                login: "bob",
                code: "ABCD-EFGH-JKMN-PQRS-TVWX",
                requester: &requester,
            }
        );
        assert!(shown.contains("bob") && !shown.contains("ABCD"), "{shown}");
    }
}
