//! Before routing: health and metrics, read-only mode, and auth.

use super::*;

/// Answers what needs no registry access (health, metrics) and refuses
/// what the access settings forbid; passes on the rest.
pub(super) async fn admit(
    app: &Arc<App>,
    req: Request<Incoming>,
) -> std::result::Result<Request<Incoming>, Box<Response<ResBody>>> {
    match req.uri().path() {
        "/healthz" => {
            let mut r = response(StatusCode::OK, full("ok\n"));
            set(&mut r, "content-type", "text/plain");
            return Err(Box::new(r));
        }
        "/metrics" => return Err(Box::new(metrics(app).await)),
        _ => {}
    }
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    if app.opts.read_only && !reading {
        return Err(Box::new(error_response(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "this registry is read-only",
        ))));
    }
    let Some(users) = app.htpasswd.clone() else {
        return Ok(req);
    };
    if reading && app.opts.anonymous_read {
        return Ok(req);
    }
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let allowed = tokio::task::spawn_blocking(move || users.allows(header.as_deref()))
        .await
        .unwrap_or(false);
    if allowed {
        return Ok(req);
    }
    let mut r = error_response(refuse(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
    ));
    set(&mut r, "www-authenticate", "Basic realm=\"layerstore\"");
    Err(Box::new(r))
}

/// Prometheus text format.
pub(super) async fn metrics(app: &Arc<App>) -> Response<ResBody> {
    let store = app.store.clone();
    let (uploads, stored) = tokio::task::spawn_blocking(move || {
        let count = |dir: &std::path::Path, ext: &str| -> (u64, u64) {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(ext))
                        .fold((0, 0), |(n, bytes), e| {
                            (n + 1, bytes + e.metadata().map(|m| m.len()).unwrap_or(0))
                        })
                })
                .unwrap_or((0, 0))
        };
        let (uploads, _) = count(
            &store.path().join(crate::store::uploads::UPLOADS_DIR),
            ".data",
        );
        let (_, packs) = count(&store.path().join("packs"), ".pack");
        (uploads, packs)
    })
    .await
    .unwrap_or((0, 0));
    let text = format!(
        "# HELP layerstore_registry_requests_total Requests answered.\n\
         # TYPE layerstore_registry_requests_total counter\n\
         layerstore_registry_requests_total {}\n\
         # HELP layerstore_registry_failed_requests_total Requests answered with a 4xx or 5xx status.\n\
         # TYPE layerstore_registry_failed_requests_total counter\n\
         layerstore_registry_failed_requests_total {}\n\
         # HELP layerstore_registry_received_bytes_total Upload bytes received.\n\
         # TYPE layerstore_registry_received_bytes_total counter\n\
         layerstore_registry_received_bytes_total {}\n\
         # HELP layerstore_registry_sent_bytes_total Body bytes sent.\n\
         # TYPE layerstore_registry_sent_bytes_total counter\n\
         layerstore_registry_sent_bytes_total {}\n\
         # HELP layerstore_registry_upload_sessions Upload sessions open.\n\
         # TYPE layerstore_registry_upload_sessions gauge\n\
         layerstore_registry_upload_sessions {uploads}\n\
         # HELP layerstore_store_pack_bytes Bytes of pack files.\n\
         # TYPE layerstore_store_pack_bytes gauge\n\
         layerstore_store_pack_bytes {stored}\n",
        app.requests.load(Ordering::Relaxed),
        app.failures.load(Ordering::Relaxed),
        app.bytes_in.load(Ordering::Relaxed),
        app.bytes_out.load(Ordering::Relaxed),
    );
    let mut r = response(StatusCode::OK, full(text));
    set(&mut r, "content-type", "text/plain; version=0.0.4");
    r
}
