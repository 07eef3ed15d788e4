//! `layerstore serve`: the store as an OCI distribution (v1.1) registry
//! over HTTP/1.1 (tokio + hyper). Repositories and tags are the store's
//! image names (`REPO:TAG`); blobs are one registry-wide namespace; every
//! layer blob pushed is deduplicated through the put path and comes back
//! byte for byte. Guarantees: a blob is stored only after its digest was
//! checked; a manifest only when everything it refers to is stored (one
//! transaction); upload sessions are files under the store and survive
//! restarts; the server listens where it is told (tests use 127.0.0.1).

mod access;
mod cache;
mod http;
mod registry;

pub use registry::{BlobPut, FoundBlob, ManifestPut, valid_digest};

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::uploads::Uploads;
use http::App;

/// Settings of [`Store::serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Largest blob accepted, in bytes.
    pub max_blob_size: u64,
    /// A request whose headers or body stall this long is dropped.
    pub idle_timeout: Duration,
    /// Stop by itself after this long (tests use it as a safety net).
    pub max_lifetime: Option<Duration>,
    /// No access log on stderr.
    pub quiet: bool,
    /// Bytes of rebuilt compressed blobs kept for the next pull (0: none).
    pub blob_cache: u64,
    /// Upload sessions open at once; more are refused (429).
    pub max_uploads: usize,
    /// htpasswd file (bcrypt entries): turns on HTTP Basic auth.
    pub htpasswd: Option<PathBuf>,
    /// With auth on, let anyone read (GET and HEAD).
    pub anonymous_read: bool,
    /// Refuse every write.
    pub read_only: bool,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            max_blob_size: 64 << 30,
            idle_timeout: Duration::from_secs(60),
            max_lifetime: None,
            quiet: false,
            blob_cache: 2 << 30,
            max_uploads: 256,
            htpasswd: None,
            anonymous_read: false,
            read_only: false,
            tls: None,
        }
    }
}

impl Store {
    /// Serves the registry until SIGTERM or SIGINT (then finishes the
    /// requests in flight, for at most 30 s) or `max_lifetime`. Calls
    /// `ready` with the bound address once it accepts connections.
    pub fn serve(&self, opts: &ServeOptions, ready: impl FnOnce(SocketAddr)) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .max_blocking_threads(64)
            .build()
            .map_err(|e| Error::io("starting the server runtime", e))?;
        let app = Arc::new(App {
            store: self.clone(),
            uploads: Uploads::open(self.path())?,
            cache: cache::BlobCache::new(self.path(), opts.blob_cache),
            opts: opts.clone(),
            busy: Mutex::new(HashSet::new()),
            htpasswd: match &opts.htpasswd {
                Some(path) => Some(Arc::new(access::Htpasswd::load(path)?)),
                None => None,
            },
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
        });
        let tls = match &opts.tls {
            Some((cert, key)) => Some(tokio_rustls::TlsAcceptor::from(access::tls_config(
                cert, key,
            )?)),
            None => None,
        };
        runtime.block_on(run(app, tls, ready))
    }
}

async fn run(
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let listen = app.opts.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::io(format!("listening on {listen}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listening address", e))?;
    ready(bound);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let lifetime = app
        .opts
        .max_lifetime
        .unwrap_or(Duration::from_secs(u64::MAX / 4));
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Error::io("installing the SIGTERM handler", e))?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = tokio::time::sleep(lifetime) => {}
        }
        Ok::<(), Error>(())
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    // Out of file descriptors and the like: keep serving.
                    Err(e) => {
                        eprintln!("layerstore serve: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (app, watcher) = (app.clone(), graceful.watcher());
                match &tls {
                    None => {
                        tokio::spawn(serve_io(app, stream, watcher));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(
                                app_header_timeout(),
                                acceptor.accept(stream),
                            );
                            if let Ok(Ok(stream)) = handshake.await {
                                serve_io(app, stream, watcher).await;
                            }
                        });
                    }
                }
            }
            stopped = &mut stop => {
                stopped?;
                break;
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(30)) => {
            eprintln!("layerstore serve: requests still running after 30 s; stopping anyway");
        }
    }
    Ok(())
}

/// Runs the request parsers on fuzz input (`testing::registry`).
pub(crate) fn fuzz_parsers(target: &str, range: &str) {
    http::fuzz_parsers(target, range);
}

/// Serves one HTTP/1.1 connection over `io` until it closes or the
/// server shuts down.
async fn serve_io<I>(app: Arc<App>, io: I, watcher: hyper_util::server::graceful::Watcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| http::handle(app.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(app_header_timeout())
        .serve_connection(TokioIo::new(io), service);
    let _ = watcher.watch(conn).await;
}

/// Headers must arrive within this (slow-loris clients are dropped).
fn app_header_timeout() -> Duration {
    Duration::from_secs(20)
}
