//! `layerstore serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use layerstore::{ServeOptions, Store};

use crate::output::parse_size;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the first line on
    /// stdout says which).
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "ADDR")]
    listen: SocketAddr,
    /// htpasswd file with bcrypt entries (`htpasswd -B`): require HTTP
    /// Basic auth.
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,
    /// With --htpasswd, let anyone pull (GET and HEAD).
    #[arg(long, requires = "htpasswd")]
    anonymous_read: bool,
    /// Refuse pushes and deletes.
    #[arg(long)]
    read_only: bool,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Largest blob accepted (e.g. 10G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64G")]
    max_blob_size: u64,
    /// Keep up to this many bytes of rebuilt compressed blobs (preflate,
    /// libzstd) for the next pull, in STORE/cache/blobs (0: none).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "2G")]
    blob_cache: u64,
    /// Upload sessions open at once; a client starting one more gets 429
    /// TOOMANYREQUESTS.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_uploads: usize,
    /// Drop requests whose body stalls this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    idle_timeout: u64,
    /// Stop by itself after this many seconds.
    #[arg(long, value_name = "SECS")]
    max_lifetime: Option<u64>,
    /// No access log on stderr.
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn serve(store: &Store, args: ServeArgs) -> Result<()> {
    if args.idle_timeout == 0 {
        bail!("--idle-timeout must be at least 1 second");
    }
    let opts = ServeOptions {
        listen: args.listen,
        max_blob_size: args.max_blob_size,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_lifetime: args.max_lifetime.map(Duration::from_secs),
        quiet: args.quiet,
        blob_cache: args.blob_cache,
        max_uploads: args.max_uploads,
        htpasswd: args.htpasswd,
        anonymous_read: args.anonymous_read,
        read_only: args.read_only,
        tls: args.tls_cert.zip(args.tls_key),
    };
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    store.serve(&opts, |addr| {
        // Scripts and tests read the address from this first line.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = out.flush();
        eprintln!(
            "layerstore: serving {} on {scheme}://{addr}",
            store.path().display()
        );
    })?;
    Ok(())
}
