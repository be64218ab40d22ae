//! The command-line grammar (clap). Handlers live in the sibling modules.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// certgate: mTLS authentication gateway and HSM-backed CA for corporate internet banking.
#[derive(Debug, Parser)]
#[command(name = "certgate", version, about)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(
        long,
        short = 'c',
        env = "CERTGATE_CONFIG",
        default_value = "certgate.toml",
        global = true
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print or check the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Create the database schema and, if absent, the CA key in the HSM and the CA
    /// certificate. Safe to run again.
    Init,
    /// Customer contracts (the tenant boundary).
    #[command(subcommand)]
    Contract(ContractCmd),
    /// Login IDs.
    #[command(subcommand)]
    User(UserCmd),
    /// Issuance codes: authorize a first issuance or re-issue.
    #[command(subcommand)]
    Issue(IssueCmd),
    /// Client certificates.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Bank staff members: add, list, disable, enable, change role, authorize and sign
    /// their certificates.
    #[command(subcommand)]
    Staff(StaffCmd),
    /// The CA itself: certificates, intermediate set-up, rollover, CRLs.
    #[command(subcommand)]
    Ca(CaCmd),
    /// The HSM: what the module and token offer, key generation (key ceremony).
    #[command(subcommand)]
    Hsm(HsmCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Expiry notices by e-mail.
    #[command(subcommand)]
    Notify(NotifyCmd),
    /// Run the gateway.
    Serve,
    /// Print a shell completion script for certgate (generated from this grammar).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a folder.
    Man {
        /// Write certgate.1 and a page for every subcommand (certgate-ca-list.1, ...) here
        /// instead of printing certgate.1.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Set up and start a demo on embedded defaults in a folder: a SoftHSM2 token, SQLite,
    /// a server certificate for localhost and a sample banking app behind the gateway.
    Demo {
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
    },
    /// The demo's sample banking app (shows the identity headers it receives).
    #[command(hide = true)]
    DemoUpstream {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print a complete, commented example configuration.
    Example,
    /// Read and check the configuration file, and read what `serve` would read with it: the
    /// HSM PIN, the listeners' and the staff console's certificates (not expired) and keys,
    /// the https upstreams' files (the gateway's own client certificate not expired) and the
    /// logo. Exit 3 when the configuration is refused.
    Check {
        #[command(flatten)]
        output: FormatArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContractCmd {
    /// Register a contract.
    Add {
        id: String,
        #[arg(long)]
        name: String,
    },
    /// List contracts.
    List {
        #[command(flatten)]
        output: FormatArg,
    },
    /// Refuse the certificates of every login ID of a contract (from the next request).
    Disable { id: String },
    /// Accept the certificates of a contract's login IDs again.
    Enable { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Register a login ID in a contract.
    Add {
        login: String,
        #[arg(long)]
        contract: String,
        /// admin, approver or general.
        #[arg(long)]
        role: crate::store::Role,
        #[arg(long)]
        email: String,
    },
    /// List the login IDs of a contract.
    List {
        #[arg(long)]
        contract: String,
        #[command(flatten)]
        output: FormatArg,
    },
    /// Refuse a login ID's certificates (from the next request); they stay issued.
    Disable { login: String },
    /// Accept a login ID's certificates again.
    Enable { login: String },
}

#[derive(Debug, Subcommand)]
pub enum IssueCmd {
    /// Authorize the first issuance for a login ID; prints the one-time code on the last line.
    Authorize { login: String },
    /// Staff re-issue: revoke the current certificate and print a new code on the last line.
    Reissue {
        login: String,
        /// RFC 5280 reason for revoking the current certificate.
        #[arg(long, default_value = "superseded")]
        reason: crate::ca::RevocationReason,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Sign a CSR for a login ID with its issuance code (the same rules as obtaining
    /// online); prints the certificate PEM.
    Sign {
        login: String,
        #[arg(long)]
        csr: PathBuf,
        /// The one-time issuance code. Prefer --code-file or CERTGATE_CODE: a command line
        /// is visible to other users of the machine.
        #[arg(long, env = "CERTGATE_CODE", hide_env_values = true)]
        code: Option<String>,
        /// File holding the issuance code.
        #[arg(long, conflicts_with = "code")]
        code_file: Option<PathBuf>,
    },
    /// List certificates.
    List {
        #[arg(long)]
        login: Option<String>,
        /// current, superseded or revoked.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        output: FormatArg,
    },
    /// Print one certificate (PEM; with `--format json` its record and the PEM).
    Show {
        serial: String,
        #[command(flatten)]
        output: FormatArg,
    },
    /// Revoke a certificate. SERIAL in hex as `openssl x509 -serial` prints it.
    Revoke {
        serial: String,
        #[arg(long)]
        reason: crate::ca::RevocationReason,
    },
}

#[derive(Debug, Subcommand)]
pub enum StaffCmd {
    /// Register a staff member (enabled).
    Add {
        /// Letters, digits and . _ - @ (1 to 64); the login ID becomes staff:NAME.
        name: String,
        /// operator, supervisor or auditor.
        #[arg(long)]
        role: crate::store::StaffRole,
        #[arg(long)]
        email: String,
    },
    /// List the staff members.
    List {
        #[command(flatten)]
        output: FormatArg,
    },
    /// Refuse a staff member's certificates (from the next request); they stay issued.
    Disable { name: String },
    /// Accept a staff member's certificates again.
    Enable { name: String },
    /// Change a staff member's role.
    Role {
        name: String,
        /// operator, supervisor or auditor.
        #[arg(long)]
        role: crate::store::StaffRole,
    },
    /// Authorize a staff member's certificate; prints the one-time code on the last line.
    Authorize { name: String },
    /// Staff certificates.
    #[command(subcommand)]
    Cert(StaffCertCmd),
}

#[derive(Debug, Subcommand)]
pub enum StaffCertCmd {
    /// Sign a CSR for a staff member with the code of `staff authorize` (the staff
    /// profile: OU=certgate staff and certgate's staff policy); prints the certificate PEM.
    Sign {
        name: String,
        #[arg(long)]
        csr: PathBuf,
        /// The one-time issuance code. Prefer --code-file or CERTGATE_CODE: a command line
        /// is visible to other users of the machine.
        #[arg(long, env = "CERTGATE_CODE", hide_env_values = true)]
        code: Option<String>,
        /// File holding the issuance code.
        #[arg(long, conflicts_with = "code")]
        code_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Print the active CA certificate and its chain (PEM).
    Cert {
        /// Print this CA (see `ca list`) instead of the active one.
        #[arg(long)]
        id: Option<i64>,
        #[command(flatten)]
        output: FormatArg,
    },
    /// List every CA (active and retired) with its key label and validity.
    List {
        #[command(flatten)]
        output: FormatArg,
    },
    /// Write a PKCS#10 request for an HSM key, for an offline root to sign.
    Csr {
        /// Label of the key in the token (make one with `hsm keygen`).
        #[arg(long)]
        key_label: String,
        /// Subject DN; defaults to [ca] subject.
        #[arg(long)]
        subject: Option<String>,
        /// Output file (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Install a CA certificate signed by an outside root, after checking it.
    Import {
        /// Label of the HSM key the certificate must certify.
        #[arg(long)]
        key_label: String,
        /// The CA certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// The chain above it up to the root (PEM, nearest issuer first).
        #[arg(long)]
        chain: PathBuf,
        /// Make it the CA that issues new certificates.
        #[arg(long)]
        activate: bool,
    },
    /// Roll over to a new self-signed CA: new key (unless it exists), new certificate,
    /// activated. The old CA stays for its certificates, CRLs and OCSP.
    Rollover {
        /// Label of the new key.
        #[arg(long)]
        key_label: String,
        /// Algorithm of the new key; defaults to [hsm] key_algorithm.
        #[arg(long)]
        algorithm: Option<crate::ca::KeyAlgorithm>,
        /// Subject DN of the new CA; must differ from every existing CA's.
        #[arg(long)]
        subject: Option<String>,
        /// Validity of the new CA certificate; defaults to [ca] ca_validity_days.
        #[arg(long)]
        validity_days: Option<u32>,
    },
    /// Make the CA `ID` (see `ca list`) the one that issues new certificates.
    Activate { id: i64 },
    /// Sign a fresh CRL for a CA (DER), e.g. to publish it offline.
    Crl {
        /// The CA; defaults to the active one.
        #[arg(long)]
        id: Option<i64>,
        /// Output file (DER).
        #[arg(long)]
        out: PathBuf,
        /// Hours until nextUpdate; defaults to `[revocation] crl_validity_hours`.
        #[arg(long)]
        hours: Option<u32>,
    },
    /// Issue a TLS server certificate for the gateway's listener (software key written
    /// beside it, readable by the owner only).
    IssueServer {
        /// DNS name (preferred syntax, at least two labels) or IP address; repeat for
        /// several. The first is also the CN. A single-label name such as `localhost` is
        /// accepted with a warning (demo and tests only: pkilint and public clients
        /// reject it); other malformed names are refused.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Where to write the certificate chain (PEM).
        #[arg(long)]
        cert_out: PathBuf,
        /// Where to write the private key (PEM).
        #[arg(long)]
        key_out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum HsmCmd {
    /// Describe the PKCS#11 module, its tokens, the mechanisms the CA needs, and whether
    /// the CA key's attributes are safe. The PIN is never printed. Exit 3 when the key is
    /// not safe as a CA key.
    Info {
        /// The key to describe; defaults to the active CA's key, else [hsm] key_label.
        #[arg(long)]
        key_label: Option<String>,
        #[command(flatten)]
        output: FormatArg,
        /// The same as `--format json` (kept for existing scripts).
        #[arg(long, hide = true, conflicts_with = "format")]
        json: bool,
    },
    /// Generate a key pair in the token: sensitive, never extractable, sign only.
    Keygen {
        #[arg(long)]
        label: String,
        /// ec-p256, ec-p384, rsa-2048 or rsa-3072.
        #[arg(long)]
        algorithm: crate::ca::KeyAlgorithm,
        /// Give the key CKA_ALWAYS_AUTHENTICATE: each signature then needs a
        /// context-specific login (as [hsm] key_always_authenticate = true does).
        #[arg(long)]
        always_authenticate: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain of the whole audit log, every signed checkpoint and the audit
    /// anchor; names the first broken record, a missing checkpoint or a rollback (exit 3).
    Verify {
        #[command(flatten)]
        output: FormatArg,
    },
    /// Sign the newest audit entry's hash (and the previous checkpoint's) in the HSM, store
    /// the checkpoint, and move the audit anchor (HSM, `[audit] anchor_file`) to it.
    Checkpoint {
        /// The signing key; defaults to the active CA's key.
        #[arg(long)]
        key_label: Option<String>,
        /// Anchor the database as it is although it is behind the anchor (after a restore
        /// from backup, once the loss was investigated). The checkpoint also signs which
        /// anchor it replaces, so that `[audit] anchor_file`, which keeps the old lines, is
        /// followed to the restored state.
        #[arg(long)]
        after_restore: bool,
    },
    /// Write the audit log as JSON lines to stdout.
    Export {
        #[arg(long, default_value_t = 1)]
        from: i64,
    },
    /// Reconcile the signatures the CA key made (certificates, CRLs, OCSP responses) with
    /// the records; list stale intents and discarded certificates. Exit 3 if unbalanced.
    Signatures {
        /// An intent open longer than this many minutes (certificate not stored) is stale.
        #[arg(long, default_value_t = 10)]
        stale_minutes: u32,
        #[command(flatten)]
        output: FormatArg,
    },
    /// Close a stale signature intent: its serial is revoked (cessationOfOperation).
    SettleIntent {
        serial: String,
        /// The certificate was (or may have been) signed but never handed out.
        #[arg(long, required = true)]
        discarded: bool,
    },
}

/// How a command prints what it lists or shows (docs/cli.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: the lines and columns printed before this flag existed.
    #[default]
    Text,
    /// For scripts: one JSON document on stdout, stable snake_case field names.
    Json,
}

/// The `--format` flag of every command that lists or shows something.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct FormatArg {
    /// text for people, json for scripts (one document; fields in docs/cli.md).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// One pass: queue the notices due now, then send the outbox.
    Run {
        #[command(flatten)]
        output: FormatArg,
    },
    /// List the outbox: state, attempts and last error of each e-mail.
    List {
        /// pending, sent, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        output: FormatArg,
    },
}
