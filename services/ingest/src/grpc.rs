//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! The request message is not decoded into structs: a pass-through codec hands the raw protobuf
//! bytes to the splitter. Responses are ordinary prost messages. gzip requests are accepted.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

use crate::pipeline::{IngestError, Pipeline, Protocol};

const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Decodes requests as raw bytes (handed to a decoder or splitter that reports bad input as
/// INVALID_ARGUMENT), encodes responses of type `R` with prost. Shared by the OTLP and Jaeger gRPC
/// receivers.
pub(crate) struct RawRequestCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for RawRequestCodec<R> {
    fn default() -> Self {
        RawRequestCodec(PhantomData)
    }
}

pub(crate) struct RawDecoder;
pub(crate) struct ResponseEncoder<R>(PhantomData<fn() -> R>);

impl<R: Message + Send + 'static> Codec for RawRequestCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = ResponseEncoder<R>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl<R: Message> Encoder for ResponseEncoder<R> {
    type Item = R;
    type Error = Status;
    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding response: {e}")))
    }
}

/// The tonic service. Cheap to clone.
#[derive(Clone)]
pub struct OtlpGrpc {
    pipeline: Arc<Pipeline>,
    max_request_bytes: usize,
}

impl OtlpGrpc {
    pub fn new(pipeline: Arc<Pipeline>, max_request_bytes: usize) -> Self {
        OtlpGrpc {
            pipeline,
            max_request_bytes,
        }
    }
}

impl tonic::server::NamedService for OtlpGrpc {
    const NAME: &'static str = SERVICE;
}

struct Export(Arc<Pipeline>);

impl tonic::server::UnaryService<Bytes> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let pipeline = self.0.clone();
        Box::pin(async move {
            let body = request.into_inner();
            match pipeline.export(Protocol::OtlpGrpc, &body).await {
                Ok(a) => {
                    let partial_success = (a.rejected_spans > 0).then(|| ExportTracePartialSuccess {
                        rejected_spans: a.rejected_spans as i64,
                        error_message: a.error_message,
                    });
                    Ok(Response::new(ExportTraceServiceResponse { partial_success }))
                }
                Err(IngestError::Invalid(msg)) => Err(Status::invalid_argument(msg)),
                Err(IngestError::Unavailable(e)) => Err(Status::unavailable(e.to_string())),
            }
        })
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower_service::Service<http::Request<tonic::body::Body>> for OtlpGrpc {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != EXPORT_PATH {
            let path = req.uri().path().to_string();
            return Box::pin(async move { Ok(Status::unimplemented(format!("unknown method {path}")).into_http()) });
        }
        let pipeline = self.pipeline.clone();
        let max = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawRequestCodec::<ExportTraceServiceResponse>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(Export(pipeline), req).await)
        })
    }
}
