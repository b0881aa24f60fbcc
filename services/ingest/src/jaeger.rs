//! Jaeger receivers: collector HTTP (`:14268`, `POST /api/traces` with a thrift `Batch`),
//! collector gRPC (`:14250`, `jaeger.api_v2.CollectorService/PostSpans`), and the agent's UDP
//! protocols (compact thrift on `:6831`, binary thrift on `:6832`, see [`crate::udp`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use tailsift_translate::jaeger;
use tailsift_translate::jaeger::proto::PostSpansResponse;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Status};

use crate::admission::Admission;
use crate::grpc::{admit, RawRequestCodec};
use crate::pipeline::{IngestError, Pipeline, Protocol};
use crate::receive::{receive, Decode, ReceiverState};

/// The Jaeger collector HTTP router.
pub fn http_router(pipeline: Arc<Pipeline>, admission: Arc<Admission>) -> Router {
    Router::new()
        .route("/api/traces", post(traces))
        .layer(DefaultBodyLimit::disable())
        .with_state(ReceiverState { pipeline, admission })
}

async fn traces(State(st): State<ReceiverState>, headers: HeaderMap, body: Body) -> Response {
    let supported =
        "application/x-thrift, application/vnd.apache.thrift.binary or application/vnd.apache.thrift.compact";
    receive(
        &st,
        &headers,
        body,
        Protocol::JaegerThriftHttp,
        supported,
        |mime| match mime {
            "" | "application/x-thrift" | "application/vnd.apache.thrift.binary" => {
                Some((Protocol::JaegerThriftHttp, jaeger::decode_thrift_binary_batch as Decode))
            }
            "application/vnd.apache.thrift.compact" => Some((
                Protocol::JaegerThriftHttp,
                jaeger::decode_thrift_compact_batch as Decode,
            )),
            _ => None,
        },
    )
    .await
}

const SERVICE: &str = "jaeger.api_v2.CollectorService";
const POST_SPANS_PATH: &str = "/jaeger.api_v2.CollectorService/PostSpans";

/// The Jaeger collector gRPC service. Cheap to clone.
#[derive(Clone)]
pub struct JaegerGrpc {
    pipeline: Arc<Pipeline>,
    admission: Arc<Admission>,
}

impl JaegerGrpc {
    pub fn new(pipeline: Arc<Pipeline>, admission: Arc<Admission>) -> Self {
        JaegerGrpc { pipeline, admission }
    }
}

impl tonic::server::NamedService for JaegerGrpc {
    const NAME: &'static str = SERVICE;
}

struct PostSpans(Arc<Pipeline>);

impl tonic::server::UnaryService<Bytes> for PostSpans {
    type Response = PostSpansResponse;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<PostSpansResponse>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let pipeline = self.0.clone();
        Box::pin(async move {
            let mut lease = crate::grpc::request_lease(&request, Protocol::JaegerGrpc, &pipeline).await?;
            let body = request.into_inner();
            match pipeline
                .export_translated(Protocol::JaegerGrpc, jaeger::decode_post_spans(&body), lease.get())
                .await
            {
                Ok(_) => Ok(tonic::Response::new(PostSpansResponse {})),
                Err(IngestError::Invalid(msg)) => Err(Status::invalid_argument(msg)),
                Err(IngestError::Unavailable(e)) => Err(Status::unavailable(e.to_string())),
            }
        })
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for JaegerGrpc {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != POST_SPANS_PATH {
            let path = req.uri().path().to_string();
            return Box::pin(async move { Ok(Status::unimplemented(format!("unknown method {path}")).into_http()) });
        }
        let pipeline = self.pipeline.clone();
        let max = self.admission.max_request_bytes;
        let (ticket, req) = match admit(&self.admission, Protocol::JaegerGrpc, req) {
            Ok(x) => x,
            Err(refused) => return Box::pin(async move { Ok(refused) }),
        };
        Box::pin(async move {
            let _ticket = ticket;
            let mut grpc = tonic::server::Grpc::new(RawRequestCodec::<PostSpansResponse>::default())
                // Requests may be gzip; answers are not compressed even when the client accepts
                // gzip: a `PostSpansResponse` (empty) gains nothing, and a gzip encoder per answer cost more
                // than the rest of a 3-span request (docs/benchmarks.md, ingest matrix, tiny-gzip).
                .accept_compressed(CompressionEncoding::Gzip)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(PostSpans(pipeline), req).await)
        })
    }
}
