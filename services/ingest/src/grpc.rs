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
    admission: Arc<crate::admission::Admission>,
}

impl OtlpGrpc {
    pub fn new(pipeline: Arc<Pipeline>, admission: Arc<crate::admission::Admission>) -> Self {
        OtlpGrpc { pipeline, admission }
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
            let mut lease = request_lease(&request, Protocol::OtlpGrpc, &pipeline).await?;
            let body = request.into_inner();
            match pipeline.export(Protocol::OtlpGrpc, &body, lease.get()).await {
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
        let max = self.admission.max_request_bytes;
        let (ticket, req) = match admit(&self.admission, Protocol::OtlpGrpc, req) {
            Ok(x) => x,
            Err(refused) => return Box::pin(async move { Ok(refused) }),
        };
        Box::pin(async move {
            let _ticket = ticket;
            let mut grpc = tonic::server::Grpc::new(RawRequestCodec::<ExportTraceServiceResponse>::default())
                // Requests may be gzip; answers are not compressed even when the client accepts
                // gzip: an `ExportTraceServiceResponse` (empty, or a partial success of a few hundred bytes) gains nothing, and a gzip encoder per answer cost more
                // than the rest of a 3-span request (docs/benchmarks.md, ingest matrix, tiny-gzip).
                .accept_compressed(CompressionEncoding::Gzip)
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(Export(pipeline), req).await)
        })
    }
}

/// The lease of a gRPC request, shared by its [`MeteredBody`] (charging frames as they arrive)
/// and the service (charging the decompressed message and the records). Never contended: tonic
/// reads the whole message before the service runs.
pub(crate) type SharedLease = Arc<tokio::sync::Mutex<crate::admission::Lease>>;

/// Admission for a gRPC request (see [`crate::admission`]): takes a concurrency slot, or answers
/// `UNAVAILABLE` at once; wraps the body so every frame is charged to the budget as it arrives
/// and the whole message must arrive within `limits.read_timeout`. The returned slot must be
/// held until the request is answered; the lease travels in the request's extensions.
pub(crate) fn admit(
    adm: &crate::admission::Admission,
    protocol: Protocol,
    req: http::Request<tonic::body::Body>,
) -> Result<(crate::admission::Ticket, http::Request<tonic::body::Body>), http::Response<tonic::body::Body>> {
    let mut ticket = match adm.enter() {
        Ok(t) => t,
        Err(r) => return Err(refused_status(protocol, &r).into_http()),
    };
    let lease: SharedLease = Arc::new(tokio::sync::Mutex::new(std::mem::replace(
        &mut ticket.lease,
        adm.budget.lease(),
    )));
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(lease.clone());
    let metered = MeteredBody {
        inner: body,
        lease,
        protocol,
        deadline: Box::pin(tokio::time::sleep(adm.read_timeout)),
        timeout: adm.read_timeout,
        failed: false,
        max: adm.max_request_bytes,
        prefix: Vec::new(),
        received: 0,
        reserved: 0,
        charged: 0,
    };
    Ok((
        ticket,
        http::Request::from_parts(parts, tonic::body::Body::new(metered)),
    ))
}

/// Counts a refusal and gives its gRPC status: `UNAVAILABLE` (concurrency, memory) or
/// `DEADLINE_EXCEEDED` (read timeout), both retryable for OTLP clients.
pub(crate) fn refused_status(protocol: Protocol, r: &crate::admission::Refused) -> Status {
    use crate::admission::Refused;
    r.count();
    let outcome = match r {
        Refused::ReadTimeout(_) => "timeout",
        _ => "unavailable",
    };
    metrics::counter!(crate::metrics::REQUESTS, "protocol" => protocol.as_str(), "outcome" => outcome).increment(1);
    match r {
        Refused::ReadTimeout(_) => Status::deadline_exceeded(r.to_string()),
        _ => Status::unavailable(r.to_string()),
    }
}

/// The lease a request's records are charged to: the one admission attached to the request
/// (shared with its body), or a fresh one.
pub(crate) enum RequestLease {
    Shared(tokio::sync::OwnedMutexGuard<crate::admission::Lease>),
    Own(crate::admission::Lease),
}

impl RequestLease {
    pub(crate) fn get(&mut self) -> &mut crate::admission::Lease {
        match self {
            RequestLease::Shared(g) => g,
            RequestLease::Own(l) => l,
        }
    }
}

/// Charges the decompressed message ([`charge_decoded`]) and takes the request's lease.
pub(crate) async fn request_lease(
    request: &Request<Bytes>,
    protocol: Protocol,
    pipeline: &Pipeline,
) -> Result<RequestLease, Status> {
    charge_decoded(request, request.get_ref().len(), protocol).await?;
    Ok(match request.extensions().get::<SharedLease>().cloned() {
        Some(l) => RequestLease::Shared(l.lock_owned().await),
        None => RequestLease::Own(pipeline.lease()),
    })
}

/// Charges the decompressed message of a compressed request (tonic decompressed it, at most
/// `limits.max_request_bytes`) to the request's lease.
pub(crate) async fn charge_decoded<T>(request: &Request<T>, len: usize, protocol: Protocol) -> Result<(), Status> {
    let compressed = request
        .metadata()
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| e != "identity");
    let Some(lease) = request.extensions().get::<SharedLease>() else {
        return Ok(());
    };
    if compressed {
        lease
            .lock()
            .await
            .charge(len)
            .map_err(|e| refused_status(protocol, &e.into()))?;
    }
    Ok(())
}

/// A request body charged to the budget as it arrives, with a deadline for the whole body. The
/// gRPC message length in the 5-byte frame prefix is reserved as soon as the prefix arrives (tonic
/// reserves a buffer of that size then; lengths over `limits.max_request_bytes` are refused by
/// tonic with `OUT_OF_RANGE`), like a `Content-Length`; bytes beyond it are charged as they come.
/// Its errors are `tonic::Status`es, which tonic answers as they are (it finds a `Status` in an
/// error's source chain).
struct MeteredBody {
    inner: tonic::body::Body,
    lease: SharedLease,
    protocol: Protocol,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: std::time::Duration,
    failed: bool,
    max: usize,
    /// The first bytes of the body, until the 5-byte message prefix is complete.
    prefix: Vec<u8>,
    received: usize,
    reserved: usize,
    charged: usize,
}

impl MeteredBody {
    /// Bytes to charge after `data` arrived.
    fn account(&mut self, data: &[u8]) -> usize {
        if self.prefix.len() < 5 {
            let need = 5 - self.prefix.len();
            self.prefix.extend_from_slice(&data[..need.min(data.len())]);
            if self.prefix.len() == 5 {
                let declared = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]);
                self.reserved = 5 + (declared as usize).min(self.max);
            }
        }
        self.received += data.len();
        let want = self.received.max(self.reserved).saturating_sub(self.charged);
        self.charged += want;
        want
    }
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = this.account(data);
                    let charged = match this.lease.try_lock() {
                        Ok(mut l) => l.charge(n),
                        Err(_) => Ok(()),
                    };
                    if let Err(e) = charged {
                        this.failed = true;
                        return Poll::Ready(Some(Err(refused_status(this.protocol, &e.into()))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.failed = true;
                    let r = crate::admission::Refused::ReadTimeout(this.timeout);
                    return Poll::Ready(Some(Err(refused_status(this.protocol, &r))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
