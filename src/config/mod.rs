//! The configuration file (TOML), read into serde structs that refuse unknown keys, then
//! checked. Relative paths are taken relative to the file's folder. Secrets are named here
//! (an environment variable or a file), never written here: see [`secret`].

mod branding;
mod cidr;
mod gateway;
mod limits;
mod notify;
mod pkcs11_uri;
pub mod reload_scope;
mod secret;
mod staff;
mod trace;

pub use branding::{BrandingConfig, BrandingLang, Rgb};
pub use cidr::{Cidr, CidrError};
pub use gateway::*;
pub use limits::{LimitsConfig, RateConfig};
pub use notify::NotifyConfig;
pub use pkcs11_uri::{ObjectType, Pkcs11Uri, UriError};
pub use secret::{Secret, SecretError, SecretSource};
pub use staff::{APPROVAL_KINDS, DEFAULT_APPROVAL_KINDS, StaffConfig};
pub use trace::TraceConfig;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::keys::KeyAlgorithm;

/// The commented example printed by `certgate config example`.
pub const EXAMPLE: &str = include_str!("example.toml");

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {0}")]
    Read(String, #[source] std::io::Error),
    #[error("the configuration file {0} is not valid: {1}")]
    Parse(String, String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub database: DatabaseConfig,
    pub hsm: HsmConfig,
    pub ca: CaConfig,
    #[serde(default)]
    pub issuance: IssuanceConfig,
    #[serde(default)]
    pub renewal: RenewalConfig,
    #[serde(default)]
    pub revocation: RevocationConfig,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// `[trace]`: span export to an OpenTelemetry collector; off by default.
    #[serde(default)]
    pub trace: TraceConfig,
    /// `[notify]`: expiry notices by e-mail; absent means no notices are sent.
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
    /// `[limits]`: rate limits on the public surface and the body read timeout.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[audit]`: where else the audit anchor is kept.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[branding]`: the institution's names, colours, logo and date time zones.
    #[serde(default)]
    pub branding: BrandingConfig,
    /// `[staff]`: the staff console, its four-eyes rules, and the command line's changes on
    /// or off.
    #[serde(default)]
    pub staff: StaffConfig,
    /// The folder relative paths were resolved against (the config file's folder).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[audit]`: read by `certgate audit checkpoint` and `verify` each time they run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// An append-only file that gets the audit anchor (newest checkpoint's record and
    /// hashes) at each checkpoint, besides the HSM; relative to the config file.
    #[serde(default)]
    pub anchor_file: Option<PathBuf>,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://certgate.db` (relative to the config file) or `postgres://user@host/db`.
    #[serde(default = "default_database_url")]
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: default_database_url(),
        }
    }
}

fn default_database_url() -> String {
    "sqlite://certgate.db".into()
}

/// `[hsm]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    #[serde(default = "default_module")]
    pub module: PathBuf,
    /// Label of the token holding the CA key; or give `token`. After loading, always set.
    #[serde(default)]
    pub token_label: String,
    /// The token as an RFC 7512 URI (`pkcs11:token=certgate;serial=...`), instead of
    /// `token_label`; its manufacturer, model and serial must match too. Parsed on load.
    #[serde(default, rename = "token")]
    token_text: Option<String>,
    #[serde(skip)]
    pub token_uri: Option<Pkcs11Uri>,
    /// Environment variable holding the user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// File holding the user PIN (e.g. a systemd credential).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// Label of the CA key object; or give `key`. After loading, always set.
    #[serde(default)]
    pub key_label: String,
    /// The CA key as an RFC 7512 URI (`pkcs11:object=certgate-ca;id=%01;type=private`),
    /// instead of `key_label`; with `id`, the key must have that `CKA_ID` (and a key
    /// generated under this label gets it). Parsed on load.
    #[serde(default, rename = "key")]
    key_text: Option<String>,
    #[serde(skip)]
    pub key_id: Option<Vec<u8>>,
    /// Algorithm of a key created by `init` or `hsm keygen`.
    #[serde(default = "default_key_algorithm")]
    pub key_algorithm: KeyAlgorithm,
    /// Signing sessions kept open: the most certgate ever has open on the token.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// Seconds between touches of each idle session, for devices that drop idle sessions
    /// (YubiHSM 2 after 30 s); 0, the default, touches none.
    #[serde(default)]
    pub keepalive_secs: u64,
    /// How EC keys sign: with the token's hashing mechanism or with raw `CKM_ECDSA`.
    #[serde(default)]
    pub ecdsa_mechanism: EcdsaMechanism,
    /// How RSA keys sign: PKCS#1 v1.5 or RSASSA-PSS. Applies to every RSA CA key opened.
    #[serde(default)]
    pub rsa_signature: RsaSignature,
    /// When a signature is preceded by `C_Login(CKU_CONTEXT_SPECIFIC)` (keys with
    /// `CKA_ALWAYS_AUTHENTICATE`).
    #[serde(default)]
    pub context_login: ContextLogin,
    /// Keys created by `init`, `hsm keygen` and `ca rollover` get `CKA_ALWAYS_AUTHENTICATE`:
    /// each signature then needs a context-specific login.
    #[serde(default)]
    pub key_always_authenticate: bool,
}

/// `[hsm] context_login`: whether each signature logs in once more, for the key alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContextLogin {
    /// For keys whose `CKA_ALWAYS_AUTHENTICATE` is true, read when the key is opened.
    #[default]
    Auto,
    /// Never; a key that needs it cannot sign (and is refused when opened).
    Never,
    /// Before every signature, whatever the key reports (modules that demand it without
    /// setting the attribute).
    Always,
}

impl ContextLogin {
    /// The configuration's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Never => "never",
            Self::Always => "always",
        }
    }
}

/// `[hsm] rsa_signature`: the signature scheme of RSA keys. The key is the same either way
/// (an ordinary RSA key, `rsaEncryption` in its certificate); only the signatures differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RsaSignature {
    /// PKCS#1 v1.5 with SHA-256 (`sha256WithRSAEncryption`).
    #[default]
    Pkcs1,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (`id-RSASSA-PSS`).
    Pss,
}

impl RsaSignature {
    /// The configuration's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pkcs1 => "pkcs1",
            Self::Pss => "pss",
        }
    }
}

/// `[hsm] ecdsa_mechanism`: which ECDSA mechanism signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EcdsaMechanism {
    /// `CKM_ECDSA_SHA256`/`_SHA384` when the token offers it, else raw `CKM_ECDSA`.
    #[default]
    Auto,
    /// Raw `CKM_ECDSA` over a hash computed by certgate, whatever the token offers.
    Raw,
    /// The token's hashing mechanism; a token without it is refused at start.
    Hashing,
}

impl EcdsaMechanism {
    /// The configuration's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Raw => "raw",
            Self::Hashing => "hashing",
        }
    }
}

fn default_module() -> PathBuf {
    "/usr/lib/softhsm/libsofthsm2.so".into()
}
fn default_key_label() -> String {
    "certgate-ca".into()
}
fn default_key_algorithm() -> KeyAlgorithm {
    KeyAlgorithm::EcP256
}
fn default_sessions() -> usize {
    4
}

impl HsmConfig {
    /// Turns `token`/`key` URIs into labels (and the extra constraints they carry); fills
    /// the default key label. Refuses a name given twice, or a URI naming the wrong thing.
    fn resolve_names(&mut self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let uri = |text: &str, what: &str| {
            Pkcs11Uri::parse(text).map_err(|e| ConfigError::Invalid(format!("[hsm] {what}: {e}")))
        };
        match (self.token_text.take(), self.token_label.is_empty()) {
            (Some(_), false) => {
                return invalid("[hsm] sets both token_label and token; keep one".into());
            }
            (None, true) => return invalid("[hsm] needs token_label or token".into()),
            (Some(text), true) => {
                let u = uri(&text, "token")?;
                if !u.names_token_only() {
                    return invalid(
                        "[hsm] token names an object (object, id or type); put the key in [hsm] key".into(),
                    );
                }
                let Some(label) = u.token.clone() else {
                    return invalid(
                        "[hsm] token needs a token= attribute (the token label)".into(),
                    );
                };
                self.token_label = label;
                self.token_uri = Some(u);
            }
            (None, false) => {}
        }
        match (self.key_text.take(), self.key_label.is_empty()) {
            (Some(_), false) => {
                return invalid("[hsm] sets both key_label and key; keep one".into());
            }
            (None, true) => self.key_label = default_key_label(),
            (Some(text), true) => {
                let u = uri(&text, "key")?;
                if !u.names_object_only() {
                    return invalid(
                        "[hsm] key names a token; put the token in [hsm] token or token_label"
                            .into(),
                    );
                }
                if u.object_type.is_some_and(|t| t != ObjectType::Private) {
                    return invalid("[hsm] key must name the private key (type=private)".into());
                }
                let Some(label) = u.object else {
                    return invalid("[hsm] key needs an object= attribute (the key label)".into());
                };
                if u.id.as_ref().is_some_and(Vec::is_empty) {
                    return invalid("[hsm] key has an empty id=".into());
                }
                self.key_label = label;
                self.key_id = u.id;
            }
            (None, false) => {}
        }
        Ok(())
    }

    /// Where the PIN is read from.
    pub fn pin_source(&self) -> Result<SecretSource, ConfigError> {
        match (&self.pin_env, &self.pin_file) {
            (Some(var), None) => Ok(SecretSource::Env(var.clone())),
            (None, Some(path)) => Ok(SecretSource::File(path.clone())),
            (None, None) => Ok(SecretSource::Env("CERTGATE_HSM_PIN".into())),
            (Some(_), Some(_)) => Err(ConfigError::Invalid(
                "[hsm] sets both pin_env and pin_file; keep one".into(),
            )),
        }
    }
}

/// `[ca]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// Distinguished name of the CA, e.g. `CN=certgate Customer CA,O=Example Bank`.
    pub subject: String,
    /// Validity of client certificates, from the moment they are obtained.
    #[serde(default = "default_validity_days")]
    pub validity_days: u32,
    /// Validity of a self-signed CA certificate made by `init`.
    #[serde(default = "default_ca_validity_days")]
    pub ca_validity_days: u32,
    /// The gateway's public base URL: renewal links, and the CRL and OCSP endpoints written
    /// into certificates unless `status_url` is set.
    pub public_url: String,
    /// Base URL of the CRL and OCSP endpoints written into new certificates and CRLs, when
    /// they are served elsewhere than `public_url` (e.g. `http://pki.bank.example` on
    /// `[revocation] http_addr`).
    #[serde(default)]
    pub status_url: Option<String>,
    /// Organisation written into client certificates (O=), beside the contract (OU=).
    #[serde(default = "default_organization")]
    pub organization: String,
}

impl CaConfig {
    /// Where the CRL and OCSP endpoints are, as new certificates and CRLs name them.
    pub fn status_base(&self) -> &str {
        self.status_url.as_deref().unwrap_or(&self.public_url)
    }
}

fn default_validity_days() -> u32 {
    365
}
fn default_ca_validity_days() -> u32 {
    3650
}
fn default_organization() -> String {
    "certgate customers".into()
}

/// `[issuance]`: one-time issuance codes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuanceConfig {
    /// Days a code stays valid after staff authorize it.
    #[serde(default = "default_code_ttl_days")]
    pub code_ttl_days: u32,
    /// Wrong tries before a code locks (staff must authorize again).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl Default for IssuanceConfig {
    fn default() -> Self {
        Self {
            code_ttl_days: default_code_ttl_days(),
            max_attempts: default_max_attempts(),
        }
    }
}

fn default_code_ttl_days() -> u32 {
    80
}
fn default_max_attempts() -> u32 {
    5
}

/// `[renewal]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalConfig {
    /// Renewal opens this many days before expiry (and the notice shows from then).
    #[serde(default = "default_window_days")]
    pub window_days: u32,
    /// Days after expiry during which the expired certificate may still renew itself.
    #[serde(default = "default_grace_days")]
    pub grace_after_expiry_days: u32,
    /// Days the replaced certificate stays valid when the new one is not used.
    #[serde(default = "default_overlap_days")]
    pub overlap_days: u32,
    /// Whether a renewal may keep the certificate's key (RFC 7030 §4.2.2 allows it; device
    /// clients such as libest always re-enroll with the same key). Off: a new key pair.
    #[serde(default)]
    pub allow_same_key: bool,
}

impl Default for RenewalConfig {
    fn default() -> Self {
        Self {
            window_days: default_window_days(),
            grace_after_expiry_days: default_grace_days(),
            overlap_days: default_overlap_days(),
            allow_same_key: false,
        }
    }
}

fn default_window_days() -> u32 {
    30
}
fn default_grace_days() -> u32 {
    0
}
fn default_overlap_days() -> u32 {
    7
}

/// `[revocation]`: how long the CRL and OCSP answers say they are valid. A change of status
/// (revocation, a disabled login ID or contract) replaces certgate's own cached copies at
/// once; a relying party that keeps a copy may rely on it until its nextUpdate, so these are
/// the longest a change can take to reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// CRL nextUpdate, in hours after its thisUpdate.
    #[serde(default = "default_crl_validity_hours")]
    pub crl_validity_hours: u32,
    /// Without a change, a CRL is remade after this many seconds (less than its validity).
    #[serde(default = "default_crl_refresh_secs")]
    pub crl_refresh_secs: u32,
    /// OCSP nextUpdate, in seconds after the answer's thisUpdate.
    #[serde(default = "default_ocsp_validity_secs")]
    pub ocsp_validity_secs: u32,
    /// Delta CRLs (RFC 5280 §5.2.4) beside the complete CRLs. On: a change of status is
    /// published in the next delta CRL, and the complete CRL is remade only every
    /// `crl_refresh_secs`; off: the complete CRL is remade at every change.
    #[serde(default)]
    pub delta_crl: bool,
    /// A delta CRL's nextUpdate, in seconds after its thisUpdate.
    #[serde(default = "default_delta_crl_validity_secs")]
    pub delta_crl_validity_secs: u32,
    /// Splits the CRL by issuance period: a certificate names the CRL of the period of this
    /// many days it was issued in (0: one CRL per CA). Certificates issued before it was set
    /// keep naming the whole CA's CRL, which goes on listing every certificate.
    #[serde(default)]
    pub crl_partition_days: u32,
    /// Earlier values of `crl_partition_days` whose parts are still named by valid
    /// certificates: their CRLs stay served.
    #[serde(default)]
    pub crl_partition_days_before: Vec<u32>,
    /// A plain-HTTP listener serving the OCSP responder and the CRLs and nothing else, for
    /// relying parties that fetch them over `http` only (NSS for OCSP; RFC 5280 §8). Point
    /// `[ca] status_url` at it so that new certificates name it.
    #[serde(default)]
    pub http_addr: Option<std::net::SocketAddr>,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            crl_validity_hours: default_crl_validity_hours(),
            crl_refresh_secs: default_crl_refresh_secs(),
            ocsp_validity_secs: default_ocsp_validity_secs(),
            delta_crl: false,
            delta_crl_validity_secs: default_delta_crl_validity_secs(),
            crl_partition_days: 0,
            crl_partition_days_before: Vec::new(),
            http_addr: None,
        }
    }
}

fn default_delta_crl_validity_secs() -> u32 {
    3600
}

fn default_crl_validity_hours() -> u32 {
    24
}
fn default_crl_refresh_secs() -> u32 {
    3600
}
fn default_ocsp_validity_secs() -> u32 {
    3600
}

/// `[log]`. The environment overrides the file: `RUST_LOG` the level, `CERTGATE_LOG_JSON`
/// (`1`/`true` or `0`/`false`) the format.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Log lines as JSON objects instead of text.
    #[serde(default)]
    pub json: bool,
    /// What `serve` logs, in `RUST_LOG` syntax: `info` (the default), `warn`,
    /// `info,certgate::proxy=debug`. Other commands log warnings only.
    #[serde(default)]
    pub level: Option<String>,
}

impl LogConfig {
    /// The `level` as a tracing filter, checked when the file is read so a typo is reported
    /// as a configuration error, not silently logged at another level.
    pub fn filter(&self) -> Result<Option<tracing_subscriber::EnvFilter>, ConfigError> {
        self.level
            .as_deref()
            .map(|l| {
                tracing_subscriber::EnvFilter::builder()
                    .parse(l)
                    .map_err(|e| ConfigError::Invalid(format!("[log] level {l:?}: {e}")))
            })
            .transpose()
    }
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, &path.display().to_string(), &base)
    }

    /// Parses and checks TOML text; `origin` names it in errors, `base` anchors relative paths.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse(origin.into(), e.to_string()))?;
        cfg.base_dir = base.to_path_buf();
        // A relative PIN file is relative to this file, like every other path in it.
        cfg.hsm.pin_file = cfg.hsm.pin_file.take().map(|p| cfg.resolve(&p));
        cfg.hsm.resolve_names()?;
        cfg.check()?;
        Ok(cfg)
    }

    /// A path from the file, anchored at the file's folder when relative.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The database URL with a relative SQLite path anchored at the config file's folder.
    pub fn database_url(&self) -> String {
        let url = &self.database.url;
        match url.strip_prefix("sqlite://") {
            Some(rest) if !rest.starts_with('/') && !rest.starts_with(':') => {
                format!("sqlite://{}", self.base_dir.join(rest).display())
            }
            _ => url.clone(),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres"))
        {
            return invalid(format!(
                "[database] url must start with sqlite: or postgres://, not {:?}",
                self.database.url
            ));
        }
        self.hsm.pin_source()?;
        self.trace.settings().map_err(ConfigError::Invalid)?;
        self.branding.check()?;
        if let Some(problem) = self.staff.problem() {
            return invalid(problem);
        }
        if let Some(problem) = self.limits.problem() {
            return invalid(problem);
        }
        if self.hsm.sessions == 0 || self.hsm.sessions > 64 {
            return invalid("[hsm] sessions must be between 1 and 64".into());
        }
        if self.hsm.key_algorithm.is_pss() {
            return invalid(format!(
                "[hsm] key_algorithm = \"{}\": the key itself is an ordinary RSA key; write \
                 key_algorithm = \"{}\" and rsa_signature = \"pss\"",
                self.hsm.key_algorithm,
                self.hsm.key_algorithm.key_type()
            ));
        }
        if self.hsm.keepalive_secs > 3600 {
            return invalid("[hsm] keepalive_secs must be between 0 (off) and 3600".into());
        }
        if self.hsm.key_always_authenticate && self.hsm.context_login == ContextLogin::Never {
            return invalid(
                "[hsm] key_always_authenticate = true creates keys that need a context-specific \
                 login for each signature, which context_login = \"never\" turns off"
                    .into(),
            );
        }
        if self.ca.validity_days == 0 || self.ca.validity_days > 825 {
            return invalid("[ca] validity_days must be between 1 and 825".into());
        }
        if !(self.ca.public_url.starts_with("https://")
            || self.ca.public_url.starts_with("http://"))
        {
            return invalid(format!(
                "[ca] public_url must be an http(s) URL, not {:?}",
                self.ca.public_url
            ));
        }
        if let Some(url) = &self.ca.status_url
            && (!(url.starts_with("http://") || url.starts_with("https://"))
                || url.contains(['?', '#']))
        {
            return invalid(format!(
                "[ca] status_url must be an http(s) URL without query or fragment, not {url:?}"
            ));
        }
        if self.issuance.max_attempts == 0 {
            return invalid("[issuance] max_attempts must be at least 1".into());
        }
        if self.renewal.window_days > self.ca.validity_days {
            return invalid(
                "[renewal] window_days must not be longer than [ca] validity_days".into(),
            );
        }
        let r = &self.revocation;
        if r.crl_validity_hours == 0 || r.crl_validity_hours > 24 * 31 {
            return invalid("[revocation] crl_validity_hours must be between 1 and 744".into());
        }
        if r.crl_refresh_secs == 0
            || u64::from(r.crl_refresh_secs) >= u64::from(r.crl_validity_hours) * 3600
        {
            return invalid(
                "[revocation] crl_refresh_secs must be at least 1 and less than crl_validity_hours"
                    .into(),
            );
        }
        if r.delta_crl_validity_secs < 60
            || u64::from(r.delta_crl_validity_secs) > u64::from(r.crl_validity_hours) * 3600
        {
            return invalid(
                "[revocation] delta_crl_validity_secs must be at least 60 and not longer than \
                 crl_validity_hours"
                    .into(),
            );
        }
        if r.crl_partition_days > 3660 || r.crl_partition_days_before.iter().any(|d| *d > 3660) {
            return invalid(
                "[revocation] crl_partition_days must be between 0 (no partitions) and 3660".into(),
            );
        }
        if r.ocsp_validity_secs < 60 || r.ocsp_validity_secs > 7 * 86_400 {
            return invalid(
                "[revocation] ocsp_validity_secs must be between 60 and 604800 (7 days)".into(),
            );
        }
        self.log.filter()?;
        gateway::check(self)?;
        if let Some(n) = &self.notify {
            n.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_and_checks() {
        let cfg = Config::parse(EXAMPLE, "example", Path::new("/etc/certgate")).unwrap();
        assert_eq!(cfg.ca.validity_days, 365);
        assert_eq!(cfg.database_url(), "sqlite:///etc/certgate/certgate.db");
    }

    #[test]
    fn hsm_keepalive_and_ecdsa_mechanism_are_read_and_checked() {
        let cfg = Config::parse(EXAMPLE, "example", Path::new(".")).unwrap();
        assert_eq!(cfg.hsm.keepalive_secs, 0);
        assert_eq!(cfg.hsm.ecdsa_mechanism, EcdsaMechanism::Auto);
        let text = EXAMPLE
            .replace("keepalive_secs = 0", "keepalive_secs = 20")
            .replace(
                "ecdsa_mechanism = \"auto\"",
                "ecdsa_mechanism = \"hashing\"",
            );
        let cfg = Config::parse(&text, "t", Path::new(".")).unwrap();
        assert_eq!(cfg.hsm.keepalive_secs, 20);
        assert_eq!(cfg.hsm.ecdsa_mechanism, EcdsaMechanism::Hashing);
        let text = EXAMPLE.replace("keepalive_secs = 0", "keepalive_secs = 3601");
        let err = Config::parse(&text, "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("keepalive_secs"), "{err}");
        let text = EXAMPLE.replace("ecdsa_mechanism = \"auto\"", "ecdsa_mechanism = \"sha256\"");
        let err = Config::parse(&text, "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("ecdsa_mechanism"), "{err}");
    }

    #[test]
    fn hsm_context_login_is_read_and_checked_against_key_creation() {
        let cfg = Config::parse(EXAMPLE, "example", Path::new(".")).unwrap();
        assert_eq!(cfg.hsm.context_login, ContextLogin::Auto);
        assert!(!cfg.hsm.key_always_authenticate);
        let with = |login: &str, create: &str| {
            EXAMPLE
                .replace(
                    "context_login = \"auto\"",
                    &format!("context_login = \"{login}\""),
                )
                .replace(
                    "key_always_authenticate = false",
                    &format!("key_always_authenticate = {create}"),
                )
        };
        let cfg = Config::parse(&with("always", "true"), "t", Path::new(".")).unwrap();
        assert_eq!(cfg.hsm.context_login, ContextLogin::Always);
        assert!(cfg.hsm.key_always_authenticate);
        let cfg = Config::parse(&with("never", "false"), "t", Path::new(".")).unwrap();
        assert_eq!(cfg.hsm.context_login, ContextLogin::Never);
        let err = Config::parse(&with("never", "true"), "t", Path::new(".")).unwrap_err();
        assert!(
            err.to_string()
                .contains("context_login = \"never\" turns off"),
            "{err}"
        );
        let err = Config::parse(&with("sometimes", "false"), "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("context_login"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = EXAMPLE.replace("[ca]", "[ca]\npin = \"1234\"");
        let err = Config::parse(&text, "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("pin"), "{err}");
    }

    #[test]
    fn enroll_host_explains_bad_combinations() {
        let with = |host: &str, public_url: &str| {
            let text = EXAMPLE
                .replace(
                    "assertion_issuer = \"certgate\"\n",
                    &format!("assertion_issuer = \"certgate\"\nenroll_host = \"{host}\"\n"),
                )
                .replacen(
                    "public_url = \"",
                    &format!("public_url = \"{public_url}\"\n# \""),
                    1,
                );
            Config::parse(&text, "t", Path::new("."))
        };
        let ok = with("enroll.bank.example", "https://enroll.bank.example").unwrap();
        assert_eq!(
            ok.gateway.enroll_host.as_deref(),
            Some("enroll.bank.example")
        );
        with("enroll.bank.example", "https://enroll.bank.example:8443/x").unwrap();
        for (host, url, says) in [
            (
                "https://enroll.bank.example",
                "https://enroll.bank.example",
                "bare",
            ),
            (
                "enroll.bank.example:443",
                "https://enroll.bank.example",
                "bare",
            ),
            ("Enroll.bank.example", "https://enroll.bank.example", "bare"),
            ("", "https://enroll.bank.example", "bare"),
            (
                "enroll.bank.example",
                "https://ib.bank.example",
                "public_url",
            ),
        ] {
            let err = with(host, url).unwrap_err().to_string();
            assert!(err.contains(says), "{host} {url}: {err}");
        }
    }

    #[test]
    fn revocation_validity_must_outlast_its_refresh() {
        let cfg = Config::parse(EXAMPLE, "example", Path::new(".")).unwrap();
        assert_eq!(cfg.revocation.crl_validity_hours, 24);
        assert_eq!(cfg.revocation.ocsp_validity_secs, 3600);
        let text = EXAMPLE.replace("crl_validity_hours = 24", "crl_validity_hours = 1");
        let err = Config::parse(&text, "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("crl_refresh_secs"), "{err}");
        let text = EXAMPLE.replace("ocsp_validity_secs = 3600", "ocsp_validity_secs = 10");
        let err = Config::parse(&text, "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("ocsp_validity_secs"), "{err}");
    }

    #[test]
    fn status_url_is_where_certificates_send_relying_parties() {
        let with =
            |line: &str| EXAMPLE.replacen("# status_url = \"http://pki.bank.example\"", line, 1);
        let cfg = Config::parse(&with(""), "t", Path::new(".")).unwrap();
        assert_eq!(cfg.ca.status_base(), "https://127.0.0.1:8443");
        assert_eq!(cfg.revocation.http_addr, None);
        let text = with("status_url = \"http://pki.bank.example\"").replacen(
            "# http_addr = \"0.0.0.0:80\"",
            "http_addr = \"127.0.0.1:8080\"",
            1,
        );
        let cfg = Config::parse(&text, "t", Path::new(".")).unwrap();
        assert_eq!(cfg.ca.status_base(), "http://pki.bank.example");
        assert_eq!(
            cfg.revocation.http_addr,
            Some("127.0.0.1:8080".parse().unwrap())
        );
        for bad in [
            "ftp://pki",
            "pki.bank.example",
            "http://pki/?x=1",
            "http://pki/#a",
        ] {
            let err = Config::parse(
                &with(&format!("status_url = \"{bad}\"")),
                "t",
                Path::new("."),
            )
            .unwrap_err();
            assert!(err.to_string().contains("status_url"), "{bad}: {err}");
        }
    }

    #[test]
    fn proxy_protocol_needs_well_formed_trusted_proxies() {
        let with = |lines: &str| {
            EXAMPLE.replacen("proxy_protocol = false\ntrusted_proxies = []\n", lines, 1)
        };
        let ok = with("proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
        let cfg = Config::parse(&ok, "t", Path::new(".")).unwrap();
        assert!(cfg.listeners[0].proxy_protocol);
        assert_eq!(cfg.listeners[0].trusted_proxies.len(), 2);
        for (lines, says) in [
            (
                "proxy_protocol = true\ntrusted_proxies = []\n",
                "needs trusted_proxies",
            ),
            ("proxy_protocol = true\n", "needs trusted_proxies"),
            (
                "trusted_proxies = [\"10.0.0.0/8\"]\n",
                "proxy_protocol is not",
            ),
            (
                "proxy_protocol = true\ntrusted_proxies = [\"10.0.0/8\"]\n",
                "\"10.0.0/8\" is not",
            ),
            (
                "proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                "prefix length",
            ),
            (
                "proxy_protocol = true\ntrusted_proxies = [\"10.1.0.0/8\"]\n",
                "did you mean 10.0.0.0/8",
            ),
            (
                "proxy_protocol = true\ntrusted_proxies = [\"0.0.0.0/1\", \"128.0.0.0/1\"]\n",
                "wider than a /8",
            ),
            (
                "proxy_protocol = true\ntrusted_proxies = [\"0.0.0.0\"]\n",
                "unspecified address",
            ),
            (
                "proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.7\"]\n",
                "lists 10.0.0.7/32 and 10.0.0.0/8, one inside the other",
            ),
            (
                "proxy_protocol = true\ntrusted_proxies = [\"::1\", \"::ffff:10.0.0.1\", \"10.0.0.1\"]\n",
                "lists 10.0.0.1/32 and 10.0.0.1/32",
            ),
        ] {
            let err = Config::parse(&with(lines), "t", Path::new(".")).unwrap_err();
            assert!(err.to_string().contains(says), "{lines}: {err}");
        }
    }

    #[test]
    fn every_wrong_upstream_tls_combination_is_explained() {
        // The example's one route, pointed at `upstream`, with `tls` as its last table.
        let with = |upstream: &str, tls: &str| {
            EXAMPLE
                .replacen(
                    "upstream = \"http://127.0.0.1:8080\"",
                    &format!("upstream = \"{upstream}\""),
                    1,
                )
                .replacen("\n[admin]", &format!("\n{tls}\n\n[admin]"), 1)
        };
        let cases = [
            ("https://app:8443", "", "needs [route.upstream_tls]"),
            (
                "https://app:8443",
                "[route.upstream_tls]\nserver_name = \"app\"",
                "needs ca_file",
            ),
            (
                "http://app:8080",
                "[route.upstream_tls]\nca_file = \"ca.pem\"",
                "not https",
            ),
            (
                "https://app:8443",
                "[route.upstream_tls]\nca_file = \"ca.pem\"\nclient_key = \"k.pem\"",
                "client_cert and client_key go together",
            ),
            (
                "https://app:8443",
                "[route.upstream_tls]\nca_file = \"ca.pem\"\nserver_name = \"a b\"",
                "server_name",
            ),
        ];
        for (upstream, tls, wanted) in cases {
            let err = Config::parse(&with(upstream, tls), "t", Path::new(".")).unwrap_err();
            assert!(err.to_string().contains(wanted), "{upstream} {tls}: {err}");
        }
        let good = with(
            "https://app:8443",
            "[route.upstream_tls]\nca_file = \"ca.pem\"",
        );
        let cfg = Config::parse(&good, "t", Path::new(".")).unwrap();
        assert!(cfg.routes[0].upstream_tls.is_some());
    }

    #[test]
    fn an_upstream_list_is_read_and_its_mistakes_explained() {
        let with = |upstream: &str| {
            EXAMPLE
                .replacen(
                    "upstream = \"http://127.0.0.1:8080\"",
                    &format!("upstream = {upstream}"),
                    1,
                )
                .replacen("lb = \"round_robin\"", "lb = \"least_outstanding\"", 1)
        };
        let cfg = Config::parse(
            &with(r#"["http://a:8080", "http://b:8080/base"]"#),
            "t",
            Path::new("."),
        )
        .unwrap();
        let r = &cfg.routes[0];
        assert_eq!(r.upstream.urls(), ["http://a:8080", "http://b:8080/base"]);
        assert_eq!(r.lb, crate::config::LbPolicy::LeastOutstanding);
        assert_eq!(r.eject_secs, 10);
        let cases = [
            ("[]", "lists no URL"),
            (r#"["http://a:1", "https://b:2"]"#, "mixes http and https"),
            (r#"["http://a:1", "ftp://b:2"]"#, "must be http://host:port"),
            (
                r#"["http://a:1", "http://b:2/?q"]"#,
                "must not have a query",
            ),
            (r#"["http://a:1", "http://b:2/#top"]"#, "or a fragment"),
            // `http::Uri` reads these as "no port", which would connect to 80.
            (r#"["http://a:99999"]"#, "from 1 to 65535"),
            (r#"["http://a:65536"]"#, "from 1 to 65535"),
            (r#"["http://a:/base"]"#, "from 1 to 65535"),
            (r#"["http://[::1]:"]"#, "from 1 to 65535"),
            (r#"["http://a:0"]"#, "port 0"),
            (r#"["http://user:secret@a:1"]"#, "user information"),
            (r#"["http://a:1", "http://A:1/"]"#, "twice"),
            (
                r#"["http://[::1]:1", "http://[0:0:0:0:0:0:0:1]:1"]"#,
                "twice",
            ),
            (r#"["http://a", "http://a:80"]"#, "twice"),
            (r#"["http://a:023111"]"#, "leading zeros"),
            (r#"["http://a:1/a/../b"]"#, "not a canonical path"),
            (r#"["http://a:1/a%2Fb"]"#, "not a canonical path"),
            (r#"["http://a:1//b"]"#, "not a canonical path"),
            (r#"["http://a:1/b;x=1"]"#, "not a canonical path"),
            (r#"["http://a:1/b/."]"#, "not a canonical path"),
        ];
        let more = [
            (
                "eject_secs = 10",
                "eject_secs = 0",
                "eject_secs must be at least 1",
            ),
            (
                "\n[admin]",
                "\n[route.health]\npath = \"health\"\ninterval_secs = 5\n\n[admin]",
                "must start with /",
            ),
            (
                "\n[admin]",
                "\n[route.health]\npath = \"/h\"\ninterval_secs = 0\n\n[admin]",
                "interval_secs and timeout_secs",
            ),
            (
                "\n[admin]",
                "\n[route.health]\npath = \"/h\"\ninterval_secs = 1\n\
                 expected_status = 42\n\n[admin]",
                "expected_status",
            ),
        ];
        for (from, to, wanted) in more {
            let text = EXAMPLE.replacen(from, to, 1);
            let err = Config::parse(&text, "t", Path::new(".")).unwrap_err();
            assert!(err.to_string().contains(wanted), "{to}: {err}");
        }
        for (upstream, wanted) in cases {
            let err = Config::parse(&with(upstream), "t", Path::new(".")).unwrap_err();
            assert!(err.to_string().contains(wanted), "{upstream}: {err}");
        }
        // The single string of older configurations still reads as one endpoint.
        let cfg = Config::parse(EXAMPLE, "t", Path::new(".")).unwrap();
        assert_eq!(cfg.routes[0].upstream.urls(), ["http://127.0.0.1:8080"]);
    }

    #[test]
    fn both_pin_sources_are_refused() {
        let text = EXAMPLE.replace("pin_env = ", "pin_file = \"/x\"\npin_env = ");
        let err = Config::parse(&text, "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("pin_env and pin_file"), "{err}");
    }

    #[test]
    fn log_level_is_checked_when_read() {
        let good = EXAMPLE.replace("level = \"info\"", "level = \"warn,certgate::proxy=debug\"");
        let cfg = Config::parse(&good, "t", Path::new(".")).unwrap();
        assert!(cfg.log.filter().unwrap().is_some());
        let bad = EXAMPLE.replace("level = \"info\"", "level = \"certgate=loud\"");
        let err = Config::parse(&bad, "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("[log] level"), "{err}");
    }

    #[test]
    fn token_and_key_uris_stand_in_for_the_labels() {
        let text = EXAMPLE
            .replace(
                "token_label = \"certgate\"",
                "token = \"pkcs11:token=bank%20CA;serial=0042\"",
            )
            .replace(
                "key_label = \"certgate-ca\"",
                "key = \"pkcs11:object=ca-2026;id=%01%A0;type=private\"",
            );
        let cfg = Config::parse(&text, "t", Path::new(".")).unwrap();
        assert_eq!(cfg.hsm.token_label, "bank CA");
        let uri = cfg.hsm.token_uri.as_ref().expect("kept for matching");
        assert_eq!(uri.serial.as_deref(), Some("0042"));
        assert_eq!(cfg.hsm.key_label, "ca-2026");
        assert_eq!(cfg.hsm.key_id.as_deref(), Some(&[0x01, 0xa0][..]));
        // Without either, the key label keeps its default.
        let plain = Config::parse(
            &EXAMPLE.replace("key_label = \"certgate-ca\"", ""),
            "t",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(plain.hsm.key_label, "certgate-ca");
        assert_eq!(plain.hsm.key_id, None);
    }

    #[test]
    fn a_name_given_twice_or_a_uri_naming_the_wrong_thing_is_refused() {
        let cases = [
            (
                EXAMPLE.replace("pin_env = ", "token = \"pkcs11:token=x\"\npin_env = "),
                "both token_label and token",
            ),
            (
                EXAMPLE.replace("pin_env = ", "key = \"pkcs11:object=x\"\npin_env = "),
                "both key_label and key",
            ),
            (
                EXAMPLE.replace("token_label = \"certgate\"", ""),
                "needs token_label or token",
            ),
            (
                EXAMPLE.replace("token_label = \"certgate\"", "token = \"pkcs11:object=k\""),
                "names an object",
            ),
            (
                EXAMPLE.replace("token_label = \"certgate\"", "token = \"pkcs11:serial=1\""),
                "token= attribute",
            ),
            (
                EXAMPLE.replace(
                    "key_label = \"certgate-ca\"",
                    "key = \"pkcs11:token=t;object=k\"",
                ),
                "names a token",
            ),
            (
                EXAMPLE.replace(
                    "key_label = \"certgate-ca\"",
                    "key = \"pkcs11:object=k;type=public\"",
                ),
                "type=private",
            ),
            (
                EXAMPLE.replace(
                    "token_label = \"certgate\"",
                    "token = \"pkcs11:token=t?pin-value=9911\"",
                ),
                "never in a URI",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(&text, "t", Path::new(".")).unwrap_err();
            assert!(err.to_string().contains(want), "{want}: {err}");
            assert!(!err.to_string().contains("9911"));
        }
    }

    #[test]
    fn worker_threads_default_to_the_cpus_and_are_bounded() {
        let cfg = Config::parse(EXAMPLE, "example", Path::new(".")).unwrap();
        assert_eq!(cfg.gateway.worker_threads, 0);
        assert!(cfg.gateway.effective_worker_threads() >= 1);
        let two = EXAMPLE.replace("worker_threads = 0", "worker_threads = 2");
        let cfg = Config::parse(&two, "t", Path::new(".")).unwrap();
        assert_eq!(cfg.gateway.effective_worker_threads(), 2);
        let many = EXAMPLE.replace("worker_threads = 0", "worker_threads = 100000");
        let err = Config::parse(&many, "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("worker_threads"), "{err}");
    }
}
