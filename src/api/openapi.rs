//! `/api/openapi.json`: the API's description (OpenAPI 3.1), kept beside the code in
//! `openapi.json`; the server URL is filled in with the prefix this darts serves under.

use std::sync::LazyLock;

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::wire::{self, Body};

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("openapi.json")).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the built-in OpenAPI document does not parse");
        json!({})
    })
});

/// The document, with `servers` set to `prefix`.
pub(super) fn document(prefix: &str) -> Response<Body> {
    let mut doc = DOCUMENT.clone();
    let url = if prefix.is_empty() { "/" } else { prefix };
    doc["servers"] = json!([{ "url": url }]);
    wire::json(StatusCode::OK, &doc)
}

#[cfg(test)]
mod tests {
    use super::super::routes::ROUTES;
    use super::*;

    #[test]
    fn the_document_parses_and_describes_every_route() {
        let doc: Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for r in ROUTES {
            let op = &doc["paths"][r.path][r.method.to_lowercase()];
            assert!(op.is_object(), "{} {} is not described", r.method, r.path);
            assert!(
                op["responses"].is_object(),
                "{} {} has no responses",
                r.method,
                r.path
            );
        }
    }
}
