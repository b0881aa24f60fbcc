//! Zipkin receiver (`:9411`): `POST /api/v2/spans` (JSON, or proto3 with
//! `application/x-protobuf`) and `POST /api/v1/spans` (JSON, or thrift with
//! `application/x-thrift`), optionally gzip-compressed. Answers 202 like a Zipkin server.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use tailsift_translate::zipkin;

use crate::admission::Admission;
use crate::pipeline::{Pipeline, Protocol};
use crate::receive::{receive, Decode, ReceiverState};

/// The Zipkin router.
pub fn router(pipeline: Arc<Pipeline>, admission: Arc<Admission>) -> Router {
    Router::new()
        .route("/api/v2/spans", post(v2))
        .route("/api/v1/spans", post(v1))
        .layer(DefaultBodyLimit::disable())
        .with_state(ReceiverState { pipeline, admission })
}

async fn v2(State(st): State<ReceiverState>, headers: HeaderMap, body: Body) -> Response {
    receive(
        &st,
        &headers,
        body,
        Protocol::ZipkinV2Json,
        "application/json or application/x-protobuf",
        |mime| match mime {
            "" | "application/json" => Some((Protocol::ZipkinV2Json, zipkin::decode_v2_json as Decode)),
            "application/x-protobuf" | "application/protobuf" => {
                Some((Protocol::ZipkinV2Proto, zipkin::decode_v2_proto as Decode))
            }
            _ => None,
        },
    )
    .await
}

async fn v1(State(st): State<ReceiverState>, headers: HeaderMap, body: Body) -> Response {
    receive(
        &st,
        &headers,
        body,
        Protocol::ZipkinV1Json,
        "application/json or application/x-thrift",
        |mime| match mime {
            "" | "application/json" => Some((Protocol::ZipkinV1Json, zipkin::decode_v1_json as Decode)),
            "application/x-thrift" | "application/vnd.apache.thrift.binary" => {
                Some((Protocol::ZipkinV1Thrift, zipkin::decode_v1_thrift as Decode))
            }
            _ => None,
        },
    )
    .await
}
