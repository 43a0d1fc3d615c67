//! The status page at `/`: one self-contained HTML document (style and
//! script inline, no external asset, since front-end machines often have
//! no internet) that polls `/status` and redraws itself.
//!
//! Read-only: it has no control that changes the daemon.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The page, built into the binary.
pub const PAGE: &str = include_str!("page.html");

/// The page may talk to its own origin only: no external script, style,
/// font or image could load even if one slipped into the markup.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; connect-src 'self'; \
     script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A strong validator of the page's bytes, so a browser revalidates with a
/// conditional request and gets a 304 until the binary changes.
fn etag() -> &'static HeaderValue {
    static ETAG: OnceLock<HeaderValue> = OnceLock::new();
    ETAG.get_or_init(|| {
        use std::hash::Hasher;
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(PAGE.as_bytes());
        HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .expect("hex digits are a valid header value")
    })
}

pub async fn serve(request: HeaderMap) -> Response {
    let etag = etag();
    let headers = [
        (header::ETAG, etag.clone()),
        // Cached, but revalidated on every load: an upgraded daemon shows
        // its own page at once.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The page must load nothing from elsewhere: no absolute URL in any
    // attribute or style, and it fetches `/status` relative to itself.
    #[test]
    fn the_page_references_no_external_asset() {
        for needle in ["http://", "https://", "//cdn", "@import", "src=", "href="] {
            assert!(
                !PAGE.contains(needle),
                "page.html contains {needle:?}: it must be self-contained"
            );
        }
        assert!(PAGE.contains("fetch(\"status\""));
    }

    #[test]
    fn the_page_is_small() {
        assert!(PAGE.len() < 16 * 1024, "page is {} bytes", PAGE.len());
    }

    // The page is read-only: nothing in it posts to the admin API.
    #[test]
    fn the_page_has_no_controls() {
        for needle in ["<button", "<form", "<input", "POST", "method:"] {
            assert!(!PAGE.contains(needle), "page.html contains {needle:?}");
        }
    }
}
