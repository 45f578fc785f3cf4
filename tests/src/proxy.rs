//! A small reverse proxy for the browser test of several instances. Each request goes to
//! one of two backends by its method: reads (`GET`, `HEAD`) to one instance, writes to
//! the other. A page loaded through it reads its streams from the first while its
//! Trigger publishes through the second, as it could happen behind any load balancer.
//! Bodies stream through unbuffered, so SSE works as it would behind nginx with
//! buffering off.

use std::convert::Infallible;

use anyhow::Context;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The proxy, serving on a free loopback port until dropped.
pub struct SplitProxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    task: JoinHandle<()>,
}

/// A body that is either the backend's (streamed) or the proxy's own error text.
type Body = http_body_util::Either<Incoming, String>;

impl SplitProxy {
    /// Proxies reads to `reads` and writes to `writes` (base URLs `http://host:port`).
    pub async fn start(reads: &str, writes: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let client = Client::builder(TokioExecutor::new()).build_http::<Incoming>();
        let (reads, writes) = (reads.to_owned(), writes.to_owned());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (client, reads, writes) = (client.clone(), reads.clone(), writes.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let backend = match *request.method() {
                        Method::GET | Method::HEAD => reads.clone(),
                        _ => writes.clone(),
                    };
                    forward(client.clone(), backend, request)
                });
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service);
                    connection.await.ok();
                });
            }
        });
        Ok(Self { url, task })
    }
}

impl Drop for SplitProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `request` to `backend` and its answer back; `502` when the backend fails.
async fn forward(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Incoming>,
    backend: String,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let answer = async {
        *request.uri_mut() = format!("{backend}{path}").parse().context("bad URI")?;
        let response = client.request(request).await?;
        anyhow::Ok(response.map(Body::Left))
    };
    Ok(answer.await.unwrap_or_else(|err| {
        let mut response = Response::new(Body::Right(format!("proxy: {err:#}")));
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        response
    }))
}
