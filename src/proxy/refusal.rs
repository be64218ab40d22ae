//! The one place where the gateway's own refusals and failures become HTTP responses: an
//! HTML page for browsers (`Accept: text/html`), JSON for everything else. Texts are fixed
//! here and never echo request data, so a page cannot carry an injection.

use http::{HeaderValue, Response, StatusCode, header};

use crate::http_common::body::{ProxyBody, full};
use crate::http_common::{CLIENT_CERTIFICATE_CHALLENGE, RETRY_AFTER_SECS};
use crate::status::Refusal;

/// Why the gateway answered instead of the app behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The client certificate (or its absence) does not let the request through.
    Certificate(Refusal),
    /// A login form named another login ID than the certificate's.
    LoginMismatch,
    /// A login form the gateway cannot read (not urlencoded, unreadable).
    LoginFormUnreadable,
    /// SNI and Host name different servers on a listener that authenticates clients.
    Misdirected,
    /// No route for this path.
    NoRoute,
    /// The request body is larger than the route allows.
    BodyTooLarge,
    /// The request is malformed.
    BadRequest,
    /// The path cannot be made canonical without guessing how the app reads it
    /// ([`super::canonical`]).
    PathRefused,
    /// The upstream could not be reached or failed.
    UpstreamFailed,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The gateway failed (e.g. an identity header could not be written).
    Internal,
    /// The listener holds `max_connections` already: this connection is shed.
    Overloaded,
}

impl Problem {
    /// Whether this refusal is about who the caller is (counted as a refusal in metrics).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::Certificate(_)
                | Self::LoginMismatch
                | Self::LoginFormUnreadable
                | Self::PathRefused
        )
    }

    /// The stable code: JSON `error`, log `reason`, metric label.
    pub fn code(self) -> &'static str {
        match self {
            Self::Certificate(r) => r.as_str(),
            Self::LoginMismatch => "login_id_mismatch",
            Self::LoginFormUnreadable => "login_form_unreadable",
            Self::Misdirected => "misdirected_request",
            Self::NoRoute => "no_route",
            Self::BodyTooLarge => "body_too_large",
            Self::BadRequest => "bad_request",
            Self::PathRefused => "path_refused",
            Self::UpstreamFailed => "upstream_failed",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Internal => "internal_error",
            Self::Overloaded => "overloaded",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Certificate(Refusal::NoCertificate) => StatusCode::UNAUTHORIZED,
            Self::Certificate(Refusal::StatusUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Certificate(_) | Self::LoginMismatch => StatusCode::FORBIDDEN,
            Self::LoginFormUnreadable => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest | Self::PathRefused => StatusCode::BAD_REQUEST,
            Self::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// (what happened, what to do), in plain words for the customer.
    fn texts(self) -> (&'static str, &'static str) {
        match self {
            Self::Certificate(r) => match r {
                Refusal::NoCertificate => (
                    "No client certificate was presented.",
                    "Log in from the PC that holds your certificate. If you have none yet, \
                     obtain it from the login page with the issuance code the bank gave you.",
                ),
                Refusal::ForeignCa => (
                    "The certificate presented was not issued by this bank.",
                    "Choose the certificate issued by the bank for your login ID, or obtain \
                     one from the login page.",
                ),
                Refusal::InvalidCertificate => (
                    "The certificate presented could not be checked.",
                    "Choose the certificate issued by the bank for your login ID. If this \
                     persists, contact the bank.",
                ),
                Refusal::Unknown => (
                    "The certificate presented is not known to the bank.",
                    "Obtain a new certificate from the login page, or contact the bank.",
                ),
                Refusal::Revoked => (
                    "Your certificate has been revoked.",
                    "Ask your contract's administrator (or the bank, for an administrator ID) \
                     to re-issue it, then obtain the new certificate from the login page.",
                ),
                Refusal::Superseded => (
                    "Your certificate has been replaced by a renewed one.",
                    "Use the renewed certificate. If it is not on this PC, contact the bank.",
                ),
                Refusal::Expired => (
                    "Your certificate has expired.",
                    "Renew it from the login page if renewal is still open; otherwise ask \
                     for a re-issue.",
                ),
                Refusal::NotYetValid => (
                    "Your certificate is not valid yet.",
                    "Check the PC's clock, then try again.",
                ),
                Refusal::UserDisabled => (
                    "This login ID is disabled.",
                    "Contact your contract's administrator or the bank.",
                ),
                Refusal::ContractDisabled => ("Your contract is disabled.", "Contact the bank."),
                Refusal::StatusUnavailable => (
                    "The status of your certificate cannot be checked right now.",
                    "Please try again in a few minutes.",
                ),
            },
            Self::LoginMismatch => (
                "The login ID entered is not the one this PC's certificate was issued to.",
                "Log in with the login ID of this certificate. Each login ID needs its own \
                 certificate.",
            ),
            Self::LoginFormUnreadable => (
                "The login form could not be checked.",
                "Send the login form from the bank's login page.",
            ),
            Self::Misdirected => (
                "This request was sent to the wrong server name.",
                "Open the bank's address again from a new window.",
            ),
            Self::NoRoute => ("This page does not exist.", "Check the address."),
            Self::BodyTooLarge => ("The request is too large.", "Send a smaller file or form."),
            Self::BadRequest => ("The request is malformed.", "Check the address."),
            Self::PathRefused => (
                "The address of this page is not valid.",
                "Open the page from the bank's menus and links.",
            ),
            Self::UpstreamFailed => (
                "The service is unavailable.",
                "Please try again in a few minutes.",
            ),
            Self::UpstreamTimeout => (
                "The service did not answer in time.",
                "Please try again in a few minutes.",
            ),
            Self::Internal => (
                "An internal error occurred.",
                "Please try again; if it persists, contact the bank.",
            ),
            Self::Overloaded => ("The service is busy.", "Please try again in a few minutes."),
        }
    }

    /// The same texts in Japanese (shown first on HTML pages: the customers are Japanese).
    fn texts_ja(self) -> (&'static str, &'static str) {
        match self {
            Self::Certificate(r) => match r {
                Refusal::NoCertificate => (
                    "電子証明書が提示されませんでした。",
                    "電子証明書をインストールしたパソコンからログインしてください。まだお持ちでない場合は、当金庫からお知らせした発行コードでログイン画面から電子証明書を取得してください。",
                ),
                Refusal::ForeignCa => (
                    "提示された電子証明書は当金庫が発行したものではありません。",
                    "ログインIDに発行された電子証明書を選択するか、ログイン画面から電子証明書を取得してください。",
                ),
                Refusal::InvalidCertificate => (
                    "提示された電子証明書を確認できませんでした。",
                    "ログインIDに発行された電子証明書を選択してください。解決しない場合は当金庫へお問い合わせください。",
                ),
                Refusal::Unknown => (
                    "提示された電子証明書は当金庫に登録されていません。",
                    "ログイン画面から電子証明書を取得し直すか、当金庫へお問い合わせください。",
                ),
                Refusal::Revoked => (
                    "この電子証明書は失効しています。",
                    "管理者ID（管理者IDの場合は当金庫）に再発行を依頼し、ログイン画面から新しい電子証明書を取得してください。",
                ),
                Refusal::Superseded => (
                    "この電子証明書は更新済みの新しい電子証明書に置き換えられました。",
                    "更新後の電子証明書をご利用ください。このパソコンにない場合は当金庫へお問い合わせください。",
                ),
                Refusal::Expired => (
                    "電子証明書の有効期限が切れています。",
                    "更新期間内であればログイン画面から更新してください。期間を過ぎた場合は再発行を依頼してください。",
                ),
                Refusal::NotYetValid => (
                    "電子証明書の有効期間がまだ始まっていません。",
                    "パソコンの時計を確認してから、もう一度お試しください。",
                ),
                Refusal::UserDisabled => (
                    "このログインIDは利用停止中です。",
                    "管理者IDまたは当金庫へお問い合わせください。",
                ),
                Refusal::ContractDisabled => {
                    ("ご契約は利用停止中です。", "当金庫へお問い合わせください。")
                }
                Refusal::StatusUnavailable => (
                    "現在、電子証明書の状態を確認できません。",
                    "しばらくしてからもう一度お試しください。",
                ),
            },
            Self::LoginMismatch => (
                "入力されたログインIDは、このパソコンの電子証明書のログインIDと異なります。",
                "この電子証明書のログインIDでログインしてください。ログインIDごとに電子証明書が必要です。",
            ),
            Self::LoginFormUnreadable => (
                "ログインフォームを確認できませんでした。",
                "当金庫のログイン画面からログインしてください。",
            ),
            Self::Misdirected => (
                "誤ったサーバー名にリクエストが送信されました。",
                "新しいウィンドウで当金庫のアドレスを開き直してください。",
            ),
            Self::NoRoute => ("このページは存在しません。", "アドレスをご確認ください。"),
            Self::BodyTooLarge => (
                "リクエストが大きすぎます。",
                "より小さなファイルやフォームで送信してください。",
            ),
            Self::PathRefused => (
                "このページのアドレスの形式が正しくありません。",
                "当金庫の画面のメニューやリンクから開いてください。",
            ),
            Self::BadRequest => (
                "リクエストの形式が正しくありません。",
                "アドレスをご確認ください。",
            ),
            Self::UpstreamFailed => (
                "サービスを利用できません。",
                "しばらくしてからもう一度お試しください。",
            ),
            Self::UpstreamTimeout => (
                "サービスが時間内に応答しませんでした。",
                "しばらくしてからもう一度お試しください。",
            ),
            Self::Internal => (
                "内部エラーが発生しました。",
                "もう一度お試しください。解決しない場合は当金庫へお問い合わせください。",
            ),
            Self::Overloaded => (
                "現在、混み合っています。",
                "しばらくしてからもう一度お試しください。",
            ),
        }
    }

    /// The response for this problem, HTML or JSON.
    pub fn respond(self, wants_html: bool) -> Response<ProxyBody> {
        let (what, todo) = self.texts();
        let (what_ja, todo_ja) = self.texts_ja();
        let status = self.status();
        let (body, content_type) = if wants_html {
            (
                format!(
                    "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
                     <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                     <title>{title}</title></head>\n<body>\n<h1>{what_ja}</h1>\n<p>{todo_ja}</p>\n\
                     <div lang=\"en\"><h2>{what}</h2>\n<p>{todo}</p></div>\n\
                     <p><small>Code: {code}</small></p>\n\
                     <p><a href=\"/certgate/\">ログイン画面へ / Login screen</a></p></body></html>\n",
                    title = status.canonical_reason().unwrap_or("Refused"),
                    code = self.code(),
                ),
                "text/html; charset=utf-8",
            )
        } else {
            (
                serde_json::json!({
                    "error": self.code(),
                    "message": what,
                    "action": todo,
                })
                .to_string(),
                "application/json",
            )
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The headers HTTP expects with these statuses: a challenge on 401, when to come
        // back on 503 (the shed path sets a shorter wait of its own).
        if status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CLIENT_CERTIFICATE_CHALLENGE),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

/// Whether the caller prefers HTML (a browser).
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}
