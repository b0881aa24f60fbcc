//! The OpenAPI 3.1 description of the coordinator's admin port, served (without authentication)
//! at `GET /openapi.json`. Generated: each handler's `#[utoipa::path]` gives its path, method,
//! request body and typed responses, the route table ([`super::table`]) its access level; this
//! module adds the title, the bearer scheme and the telemetry routes served beside the admin
//! routes. `tests/tests/coordinator_admin.rs` checks the live answers of every route against it.

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, ResponseBuilder};

/// Routes served by the shared telemetry router next to the admin routes (all `GET`, public).
pub const TELEMETRY_ROUTES: &[&str] = &["/metrics", "/healthz", "/readyz"];

/// Title, description and the bearer scheme; the router adds the paths.
pub(super) fn base() -> OpenApi {
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Tailsift coordinator admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Policy versions, hash seeds and Raft membership of a Tailsift coordinator cluster. Writes sent to a follower are forwarded to the leader, except membership changes (421 names the leader). Reads carry x-tailsift-policy-version and x-tailsift-applied-index headers.",
                ))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
                )
                .build(),
        ))
        .build()
}

/// Adds the telemetry routes (plain text, public).
pub(super) fn finish(doc: &mut OpenApi) {
    let text = |d: &str| {
        ResponseBuilder::new()
            .description(d)
            .content("text/plain", ContentBuilder::new().build())
            .build()
    };
    let op = |summary: &str, responses: Vec<(&str, &str)>| {
        let mut b = OperationBuilder::new()
            .summary(Some(summary))
            .securities(Some(Vec::<SecurityRequirement>::new()));
        for (status, d) in responses {
            b = b.response(status, text(d));
        }
        PathItem::new(HttpMethod::Get, b.build())
    };
    let paths = &mut doc.paths.paths;
    paths.insert(
        "/metrics".into(),
        op("Prometheus metrics", vec![("200", "text exposition format")]),
    );
    paths.insert("/healthz".into(), op("Alive", vec![("200", "ok")]));
    paths.insert(
        "/readyz".into(),
        op(
            "Ready while a Raft leader is known",
            vec![("200", "ready"), ("503", "no leader known")],
        ),
    );
}

#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn serve(Extension(doc): Extension<Arc<OpenApi>>) -> Json<Arc<OpenApi>> {
    Json(doc)
}
