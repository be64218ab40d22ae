//! certgate's own paths, each declared once: methods, path, who may call it, and the
//! handler. The gateway's question "is this path ours, and who may call it" ([`Web::owns`])
//! and the dispatch ([`Web::handle`]) both read [`OWN_PATHS`], so they cannot disagree.
//! To add an own path, add its line here (a new family of paths: a new [`Mount`]).
//!
//! A handler here only picks what its adapter needs from [`Web`]; the work is in the
//! adapters (`pages`, `enroll/`, `api`, `revocation`).

use futures_util::future::BoxFuture;
use http::StatusCode;

use super::enroll::{browser, est};
use super::limits::{ClientKeys, ErrorBody, Surface};
use super::pages::{self, Page};
use super::request::WebRequest;
use super::respond::{WebResponse, text};
use super::route_table::{
    Access::{ContractAdmin, Customer, Public, Renewal},
    Methods, Mount,
    PathSpec::{Exact, Prefix, Template},
    route,
};
use super::{Web, api};

const GET: Methods = Methods::GET;
const POST: Methods = Methods::POST;
const GET_POST: Methods = Methods::GET.and(Methods::POST);

type Reply<'a> = BoxFuture<'a, WebResponse>;

/// The table of own paths. Mounts are tried in order; within one, routes are.
#[rustfmt::skip] // one line per route, as a table reads
pub static OWN_PATHS: [Mount<Web>; 5] = [
    Mount {
        prefix: "/certgate",
        unknown: Public,
        not_found: || text(StatusCode::NOT_FOUND, "not found"),
        not_allowed: || text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        routes: &[
            route(GET, Exact("/certgate"), Public, landing_page),
            route(GET, Exact("/certgate/"), Public, landing_page),
            route(GET, Exact("/certgate/obtain"), Public, obtain_page),
            route(GET, Exact("/certgate/renew"), Renewal, renew_page),
            route(GET, Exact("/certgate/admin"), ContractAdmin, admin_page),
            route(GET, Exact("/certgate/renew-later"), Public, renew_later),
            route(POST, Exact("/certgate/api/obtain"), Public, browser_obtain),
            route(POST, Exact("/certgate/api/renew"), Renewal, browser_renew),
            route(GET, Prefix("/certgate/assets/"), Public, asset),
        ],
    },
    Mount {
        prefix: est::PREFIX,
        unknown: Public,
        not_found: est::unknown_operation,
        not_allowed: est::method_not_allowed,
        routes: &[
            route(GET, Exact("/.well-known/est/cacerts"), Public, est_cacerts),
            route(GET, Exact("/.well-known/est/csrattrs"), Public, est_csrattrs),
            route(POST, Exact("/.well-known/est/simpleenroll"), Public, est_enroll),
            route(POST, Exact("/.well-known/est/simplereenroll"), Renewal, est_reenroll),
        ],
    },
    Mount {
        prefix: "/crl/",
        unknown: Public,
        not_found: || text(StatusCode::NOT_FOUND, "no such CRL"),
        not_allowed: || text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        routes: &[route(GET, Prefix("/crl/"), Public, crl)],
    },
    Mount {
        prefix: "/ocsp",
        unknown: Public,
        // Unreachable (the two routes cover the mount); the same answer as a wrong method.
        not_found: ocsp_not_allowed,
        not_allowed: ocsp_not_allowed,
        routes: &[
            route(POST, Exact("/ocsp"), Public, ocsp),
            route(GET_POST, Prefix("/ocsp/"), Public, ocsp),
        ],
    },
    Mount {
        prefix: "/api/v1/",
        unknown: Customer,
        not_found: api::not_found,
        not_allowed: api::method_not_allowed,
        routes: &[
            route(GET, Exact("/api/v1/users"), ContractAdmin, admin_users),
            route(POST, Exact("/api/v1/users"), ContractAdmin, admin_add_user),
            route(POST, Template("/api/v1/users/", "/reissue"), ContractAdmin, admin_reissue),
            route(POST, Template("/api/v1/users/", "/authorize"), ContractAdmin, admin_authorize),
        ],
    },
];

// The handlers: each hands its adapter what it needs from `Web`. The third argument is the
// path's variable part (a template's segment, a prefix's rest).

fn landing_page<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(w.page(Page::Landing, r))
}

fn obtain_page<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(w.page(Page::Obtain, r))
}

fn renew_page<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(w.page(Page::Renew, r))
}

fn admin_page<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(w.page(Page::Admin, r))
}

fn renew_later<'a>(_: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    ready(pages::renew_later(r))
}

fn asset<'a>(_: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    ready(pages::asset(&r.path))
}

fn browser_obtain<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    let keys = ClientKeys::new(&r.remote, browser::named_login(r).as_deref());
    Box::pin(w.limits.code_attempt(
        keys,
        ErrorBody::Json,
        browser::obtain(&w.lifecycle, &w.ca_chain, r),
    ))
}

fn browser_renew<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(limited(
        w,
        Surface::Reenroll,
        renewer(r),
        ErrorBody::Json,
        browser::renew(&w.lifecycle, &w.ca_chain, r),
    ))
}

fn est_cacerts<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    ready(est::cacerts(&w.ca_chain, r))
}

fn est_csrattrs<'a>(_: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    ready(est::csrattrs(r))
}

fn est_enroll<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    let Some((login, _)) = est::basic_credentials(r) else {
        // EST clients (libest among them) ask first without credentials and send them
        // after the 401 challenge: that first request tries no code, so it costs nothing.
        return Box::pin(est::simpleenroll(&w.lifecycle, r));
    };
    let keys = ClientKeys::new(&r.remote, Some(login.as_str()));
    Box::pin(
        w.limits
            .code_attempt(keys, ErrorBody::Text, est::simpleenroll(&w.lifecycle, r)),
    )
}

fn est_reenroll<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(limited(
        w,
        Surface::Reenroll,
        renewer(r),
        ErrorBody::Text,
        est::simplereenroll(&w.lifecycle, r),
    ))
}

fn crl<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(w.revocation.crl(r))
}

fn ocsp<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(w.revocation.ocsp(r, &w.limits))
}

fn admin_users<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(api::users(&w.lifecycle, r))
}

// An administrator's changes each write audit rows (and a re-issue grows the CRL): bounded
// per address and per administrator, like the public surface.
fn admin_add_user<'a>(w: &'a Web, r: &'a WebRequest, _: &'a str) -> Reply<'a> {
    Box::pin(limited(
        w,
        Surface::AdminChanges,
        renewer(r),
        ErrorBody::Json,
        api::add_user(&w.lifecycle, r),
    ))
}

fn admin_reissue<'a>(w: &'a Web, r: &'a WebRequest, login: &'a str) -> Reply<'a> {
    Box::pin(limited(
        w,
        Surface::AdminChanges,
        renewer(r),
        ErrorBody::Json,
        api::reissue(&w.lifecycle, r, login),
    ))
}

fn admin_authorize<'a>(w: &'a Web, r: &'a WebRequest, login: &'a str) -> Reply<'a> {
    Box::pin(limited(
        w,
        Surface::AdminChanges,
        renewer(r),
        ErrorBody::Json,
        api::authorize(&w.lifecycle, r, login),
    ))
}

/// A request that costs one token of `surface` before it is answered.
async fn limited(
    w: &Web,
    surface: Surface,
    keys: ClientKeys,
    body: ErrorBody,
    answer: impl Future<Output = WebResponse>,
) -> WebResponse {
    match w.limits.admit(surface, &keys).await {
        Ok(()) => answer.await,
        Err(refused) => refused.response(body),
    }
}

/// A renewal, or an administrator's change, counts against its address and the
/// certificate's login ID.
fn renewer(r: &WebRequest) -> ClientKeys {
    ClientKeys::new(&r.remote, r.peer.as_ref().map(|p| p.login.as_str()))
}

fn ready<'a>(response: WebResponse) -> Reply<'a> {
    Box::pin(std::future::ready(response))
}

/// Every OCSP path takes one of the two request forms (RFC 6960 A.1).
fn ocsp_not_allowed() -> WebResponse {
    text(
        StatusCode::METHOD_NOT_ALLOWED,
        "OCSP takes POST /ocsp, or GET /ocsp/<base64 request> (RFC 6960 A.1)",
    )
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::super::route_table::{self, Access, OwnRoute, PathSpec, Resolved};
    use super::*;

    /// A path each route answers (the template's segment and the prefix's rest filled in).
    fn example(path: PathSpec) -> String {
        match path {
            PathSpec::Exact(p) => p.to_owned(),
            PathSpec::Prefix(p) => format!("{p}x"),
            PathSpec::Template(before, after) => format!("{before}x{after}"),
        }
    }

    fn routes() -> impl Iterator<Item = (&'static Mount<Web>, &'static OwnRoute<Web>)> {
        OWN_PATHS
            .iter()
            .flat_map(|m| m.routes.iter().map(move |r| (m, r)))
    }

    const METHODS: [Method; 6] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];

    #[test]
    fn every_route_is_reached_by_its_own_path_and_methods() {
        for (mount, route) in routes() {
            let path = example(route.path);
            assert!(!route.methods.is_empty(), "{}", route.path);
            assert!(
                path.starts_with(mount.prefix),
                "{} outside its mount",
                route.path
            );
            assert_eq!(
                Web::owns(&path),
                Some(route.access),
                "{}: the gateway must be told the declared access",
                route.path
            );
            for method in METHODS {
                match route_table::resolve(&OWN_PATHS, &method, &path) {
                    Resolved::Route(found, _) if route.methods.allows(&method) => {
                        assert!(std::ptr::eq(found, route), "{method} {path} is shadowed");
                    }
                    Resolved::NotAllowed(_, allow) if !route.methods.allows(&method) => {
                        assert!(allow.overlaps(route.methods), "{method} {path}");
                        assert!(!allow.allows(&method), "{method} {path}");
                    }
                    Resolved::Route(found, _) => {
                        // Another route for the same path and this method.
                        assert_eq!(found.path, route.path, "{method} {path}");
                    }
                    _ => panic!("{method} {path} is owned but not dispatched"),
                }
            }
        }
    }

    #[test]
    fn no_path_and_method_is_declared_twice_and_a_path_has_one_access() {
        for (i, (_, a)) in routes().enumerate() {
            for (_, b) in routes().skip(i + 1) {
                if a.path == b.path {
                    assert!(!a.methods.overlaps(b.methods), "{} declared twice", a.path);
                    // The gateway asks by path alone.
                    assert_eq!(a.access, b.access, "{}", a.path);
                }
            }
        }
        for (i, a) in OWN_PATHS.iter().enumerate() {
            for b in OWN_PATHS.iter().skip(i + 1) {
                assert!(
                    !a.prefix.starts_with(b.prefix) && !b.prefix.starts_with(a.prefix),
                    "mounts {} and {} overlap",
                    a.prefix,
                    b.prefix
                );
            }
        }
    }

    #[test]
    fn owned_paths_and_their_access_are_as_before_the_table() {
        use Access::*;
        let cert = Some(Customer);
        for (path, want) in [
            ("/certgate", Some(Public)),
            ("/certgate/", Some(Public)),
            ("/certgate/obtain", Some(Public)),
            ("/certgate/nothing", Some(Public)),
            ("/certgate/assets/style.css", Some(Public)),
            ("/certgate/renew", Some(Renewal)),
            ("/certgate/api/renew", Some(Renewal)),
            ("/certgate/admin", Some(ContractAdmin)),
            ("/certgatex", None),
            ("/.well-known/est/simpleenroll", Some(Public)),
            ("/.well-known/est/simplereenroll", Some(Renewal)),
            ("/.well-known/est/serverkeygen", Some(Public)),
            ("/.well-known/est", None),
            ("/crl/1.crl", Some(Public)),
            ("/crl", None),
            ("/ocsp", Some(Public)),
            ("/ocsp/MEQw", Some(Public)),
            ("/ocspx", None),
            ("/api/v1/users", Some(ContractAdmin)),
            ("/api/v1/users/bob/reissue", Some(ContractAdmin)),
            ("/api/v1/unknown", cert),
            ("/api/v1", None),
            ("/", None),
            ("/ib/top", None),
        ] {
            assert_eq!(Web::owns(path), want, "{path}");
        }
    }

    #[test]
    fn unknown_paths_and_methods_answer_in_their_mounts_words() {
        let not_found = |path: &str| match route_table::resolve(&OWN_PATHS, &Method::GET, path) {
            Resolved::NotFound(m) => (m.not_found)(),
            _ => panic!("{path} should be unknown"),
        };
        assert_eq!(
            not_found("/certgate/nothing").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            not_found("/.well-known/est/serverkeygen").body().as_ref(),
            b"unknown EST operation\n"
        );
        assert!(not_found("/api/v1/users/bob").body().starts_with(b"{"));
        match route_table::resolve(&OWN_PATHS, &Method::PUT, "/api/v1/users") {
            Resolved::NotAllowed(_, allow) => {
                assert_eq!(allow.allow_header(), "GET, HEAD, POST")
            }
            _ => panic!("PUT /api/v1/users"),
        }
        assert!(matches!(
            route_table::resolve(&OWN_PATHS, &Method::GET, "/ib/top"),
            Resolved::NotOurs
        ));
    }
}
