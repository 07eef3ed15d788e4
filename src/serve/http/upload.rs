//! Upload sessions over HTTP: start (with mount and single-request
//! pushes), PATCH chunks, close with digest check, status, cancel.

use super::*;

pub(super) fn upload_location(repo: &str, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

pub(super) fn session_response(
    status: StatusCode,
    repo: &str,
    id: &str,
    size: u64,
) -> Response<ResBody> {
    let mut r = response(status, empty());
    set(&mut r, "location", &upload_location(repo, id));
    set(&mut r, "docker-upload-uuid", id);
    set(&mut r, "range", &format!("0-{}", size.saturating_sub(1)));
    set(&mut r, "content-length", "0");
    r
}

pub(super) fn blob_created(repo: &str, d: &str) -> Response<ResBody> {
    let mut r = response(StatusCode::CREATED, empty());
    set(&mut r, "location", &format!("/v2/{repo}/blobs/{d}"));
    set(&mut r, "docker-content-digest", d);
    set(&mut r, "content-length", "0");
    r
}

/// Marks an upload session busy while a request writes to it.
pub(super) struct BusyGuard<'a>(&'a App, String);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.0.busy.lock() {
            busy.remove(&self.1);
        }
    }
}

pub(super) fn claim<'a>(app: &'a App, id: &str) -> std::result::Result<BusyGuard<'a>, Refusal> {
    let mut busy = app.busy.lock().map_err(|_| {
        refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "poisoned lock",
        )
    })?;
    if !busy.insert(id.to_string()) {
        return Err(refuse(
            StatusCode::CONFLICT,
            "BLOB_UPLOAD_INVALID",
            format!("upload {id} is being written by another request"),
        ));
    }
    Ok(BusyGuard(app, id.to_string()))
}

pub(super) async fn start_upload(
    app: &Arc<App>,
    repo: &str,
    query: Option<&str>,
    req: Request<Incoming>,
) -> Reply {
    // A mount of a blob not here falls back to a plain upload session
    // (never an error).
    if let Some(mount) = query_param(query, "mount")
        && valid_digest(&mount)
        && find_blob(app, &mount).await.is_ok()
    {
        return Ok(blob_created(repo, &mount));
    }
    let uploads = app.uploads.clone();
    let owner = repo.to_string();
    let limit = app.opts.max_uploads;
    let id = blocking(move || {
        // Sessions are counted on disk, so those of a previous run (which
        // clients may resume) count too, until gc removes stale ones.
        (uploads.count() < limit)
            .then(|| uploads.create(&owner))
            .transpose()
    })
    .await?
    .ok_or_else(|| {
        refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            format!("{limit} uploads are open; finish or cancel one first"),
        )
    })?;
    if let Some(d) = query_param(query, "digest") {
        return finish_with_body(app, repo, &id, &d, req.into_body()).await;
    }
    Ok(session_response(StatusCode::ACCEPTED, repo, &id, 0))
}

pub(super) fn session_file(
    app: &App,
    repo: &str,
    id: &str,
) -> std::result::Result<std::path::PathBuf, Refusal> {
    app.uploads.data(id, repo).ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            format!("upload {id} unknown in {repo}"),
        )
    })
}

/// Appends a request body to a session file; returns the new size. On a
/// failure the file is cut back to where it was.
pub(super) async fn append_body(
    app: &Arc<App>,
    path: &std::path::Path,
    mut body: Incoming,
) -> std::result::Result<u64, Refusal> {
    let io_err = |e: io::Error| {
        refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("upload: {e}"),
        )
    };
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .await
        .map_err(io_err)?;
    let before = file.metadata().await.map_err(io_err)?.len();
    let mut size = before;
    let result: std::result::Result<(), Refusal> = async {
        loop {
            let frame = match tokio::time::timeout(app.opts.idle_timeout, body.frame()).await {
                Err(_) => {
                    return Err(refuse(
                        StatusCode::REQUEST_TIMEOUT,
                        "BLOB_UPLOAD_INVALID",
                        format!("no data for {} s", app.opts.idle_timeout.as_secs()),
                    ));
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => {
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "BLOB_UPLOAD_INVALID",
                        format!("reading the request body: {e}"),
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                size += data.len() as u64;
                if size > app.opts.max_blob_size {
                    return Err(refuse(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "SIZE_INVALID",
                        format!("blob exceeds the limit of {} bytes", app.opts.max_blob_size),
                    ));
                }
                file.write_all(&data).await.map_err(io_err)?;
                app.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
    }
    .await;
    match result {
        Ok(()) => {
            file.sync_data().await.map_err(io_err)?;
            Ok(size)
        }
        Err(e) => {
            let _ = file.set_len(before).await;
            Err(e)
        }
    }
}

pub(super) async fn patch_upload(
    app: &Arc<App>,
    repo: &str,
    id: &str,
    req: Request<Incoming>,
) -> Reply {
    let path = session_file(app, repo, id)?;
    let _busy = claim(app, id)?;
    let current = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let range = req
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(r) = &range {
        let spec = r
            .trim()
            .trim_start_matches("bytes=")
            .trim_start_matches("bytes ");
        let parsed = spec.split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
        });
        let fits = match parsed {
            Some((a, b)) => a == current && b >= a && declared.is_none_or(|n| n == b - a + 1),
            None => false,
        };
        if !fits {
            let mut resp = error_response(refuse(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UPLOAD_INVALID",
                format!("Content-Range {r:?} does not continue the upload at byte {current}"),
            ));
            set(&mut resp, "location", &upload_location(repo, id));
            set(
                &mut resp,
                "range",
                &format!("0-{}", current.saturating_sub(1)),
            );
            return Ok(resp);
        }
    }
    let size = append_body(app, &path, req.into_body()).await?;
    Ok(session_response(StatusCode::ACCEPTED, repo, id, size))
}

pub(super) async fn finish_upload(
    app: &Arc<App>,
    repo: &str,
    id: &str,
    query: Option<&str>,
    req: Request<Incoming>,
) -> Reply {
    let d = query_param(query, "digest").ok_or_else(|| {
        refuse(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "closing an upload needs ?digest=",
        )
    })?;
    session_file(app, repo, id)?;
    finish_with_body(app, repo, id, &d, req.into_body()).await
}

pub(super) async fn finish_with_body(
    app: &Arc<App>,
    repo: &str,
    id: &str,
    d: &str,
    body: Incoming,
) -> Reply {
    check_digest(d, "DIGEST_INVALID")?;
    let path = session_file(app, repo, id)?;
    let _busy = claim(app, id)?;
    append_body(app, &path, body).await?;
    let store = app.store.clone();
    let name = d.to_string();
    let file = path.clone();
    let outcome = blocking(move || store.registry_store_upload(&file, &name)).await;
    match outcome {
        Ok(BlobPut::Stored(_)) => {
            app.uploads.remove(id);
            Ok(blob_created(repo, d))
        }
        Ok(BlobPut::Mismatch { actual }) => {
            app.uploads.remove(id);
            Err(refuse(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                format!("the uploaded bytes hash to {actual}, not {d}"),
            ))
        }
        Err(e) => Err(e),
    }
}

pub(super) fn upload_status(app: &Arc<App>, repo: &str, id: &str) -> Reply {
    let path = session_file(app, repo, id)?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(session_response(StatusCode::NO_CONTENT, repo, id, size))
}

pub(super) fn cancel_upload(app: &Arc<App>, repo: &str, id: &str) -> Reply {
    session_file(app, repo, id)?;
    app.uploads.remove(id);
    Ok(response(StatusCode::NO_CONTENT, empty()))
}
