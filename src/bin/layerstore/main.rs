//! The `layerstore` command line: a thin shell over [`layerstore::Store`].
//! Every command is one library call plus output formatting.

mod containers;
mod images;
mod layers;
mod maintenance;
mod output;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use layerstore::Store;

use crate::containers::ContainerCommand;
use crate::images::ImageCommand;
use crate::output::parse_size;

/// A content-addressed, deduplicating store for container image layers.
#[derive(Parser)]
#[command(name = "layerstore", version, about, long_about = None)]
struct Cli {
    /// Store directory [default: $LAYERSTORE_DIR, else $XDG_DATA_HOME/layerstore,
    /// else ~/.local/share/layerstore]
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store a layer (tar, tar.gz or tar.zst, detected from its bytes); prints its DiffID.
    Put {
        /// Layer file, or `-` for standard input.
        file: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Refuse layers larger than this uncompressed (e.g. 10G, 512M).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// Store the bytes exactly even if they are not a complete tar
        /// archive (by default such input is refused).
        #[arg(long)]
        raw: bool,
        /// Keep only the tar of a compressed layer, not what rebuilds the
        /// compressed blob byte for byte (faster put; `get` of the
        /// compressed digest then fails, `get --tar` works).
        #[arg(long)]
        tar_only: bool,
        /// Find the cheapest exact method for a gzip blob now, during the
        /// put (preflate runs at about gzip's own speed), instead of keeping
        /// it verbatim until the next gc.
        #[arg(long)]
        exact_now: bool,
    },
    /// Write the bytes of a digest: a layer's tar for a DiffID, the original
    /// compressed blob, byte for byte, for a compressed digest.
    Get {
        /// `sha256:<hex>` DiffID, or the digest of a compressed blob that was put.
        digest: String,
        /// Write to FILE (atomically) instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Write the uncompressed tar even for a compressed digest.
        #[arg(long)]
        tar: bool,
    },
    /// List stored layers.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Unpin layers; their space comes back with the next gc.
    Rm {
        /// DiffIDs or compressed digests.
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Reclaim space: drop unreferenced layers and chunks, rewrite sparse packs.
    Gc {
        /// Report what would be freed without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Rewrite packs whose live share is below this percentage.
        #[arg(long, default_value_t = 50.0, value_name = "PERCENT")]
        rewrite_below: f64,
        /// Keep registry blobs no manifest uses this many seconds after
        /// their push.
        #[arg(long, default_value_t = 86400, value_name = "SECS")]
        registry_grace: u64,
        /// Remove registry upload sessions untouched this many seconds.
        #[arg(long, default_value_t = 604800, value_name = "SECS")]
        upload_max_age: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the store; exits non-zero if any problem is found.
    Verify {
        /// Also read every chunk and rebuild every layer's sha256.
        #[arg(long)]
        full: bool,
        /// Restore from the packs what the index lost, then check again.
        #[arg(long)]
        repair: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import, list, inspect, tag, remove and export images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Write an image's root filesystem into DIR (absent or empty).
    Checkout {
        /// Image name.
        image: String,
        /// Target directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create, list, diff, remove and commit containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Show store figures.
    Stat {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve the store as an OCI distribution registry (HTTP/1.1, or HTTPS
    /// with --tls-cert/--tls-key).
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    output::finish_progress();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`| head`): stop quietly, with the
        // status a process killed by SIGPIPE has, as coreutils do.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("layerstore: error: {}", error_message(&e));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, skipping a cause whose text the
/// message before it already ends with (library errors print their source).
fn error_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// How a command opens its store.
enum Open {
    /// Commands that store data create the store if there is none.
    OrCreate,
    /// Every other command needs an existing store.
    Existing,
    /// `verify --repair` may start a new index over packs whose index was
    /// lost (every other command refuses to).
    ForRepair,
}

fn open_store(path: Option<PathBuf>, how: Open) -> Result<Store> {
    let path = path
        .or_else(Store::default_path)
        .ok_or_else(|| anyhow!("no store directory: pass --store DIR or set LAYERSTORE_DIR"))?;
    let store = match how {
        Open::OrCreate => Store::open(&path),
        Open::Existing => Store::open_existing(&path),
        Open::ForRepair => Store::open_for_repair(&path),
    };
    let store = store.with_context(|| format!("opening store {}", path.display()))?;
    Ok(store
        .with_lock_wait_notice(|why| {
            output::finish_progress();
            eprintln!("layerstore: {why}")
        })
        .with_progress(output::show_progress))
}

fn run(cli: Cli) -> Result<()> {
    let how = match &cli.command {
        Command::Put { .. }
        | Command::Image(ImageCommand::Import { .. })
        | Command::Serve { .. } => Open::OrCreate,
        Command::Verify { repair: true, .. } => Open::ForRepair,
        _ => Open::Existing,
    };
    let store = open_store(cli.store, how)?;
    match cli.command {
        Command::Put {
            file,
            json,
            max_size,
            raw,
            tar_only,
            exact_now,
        } => layers::put(&store, &file, json, max_size, raw, tar_only, exact_now),
        Command::Get {
            digest,
            output,
            tar,
        } => layers::get(&store, &digest, output, tar),
        Command::Ls { json } => layers::ls(&store, json),
        Command::Rm { digests } => layers::rm(&store, &digests),
        Command::Stat { json } => layers::stat(&store, json),
        Command::Image(cmd) => images::image(&store, cmd),
        Command::Checkout { image, dir, json } => containers::checkout(&store, &image, &dir, json),
        Command::Container(cmd) => containers::container(&store, cmd),
        Command::Verify { full, repair, json } => maintenance::verify(&store, full, repair, json),
        Command::Gc {
            dry_run,
            rewrite_below,
            registry_grace,
            upload_max_age,
            json,
        } => maintenance::gc(
            &store,
            dry_run,
            rewrite_below,
            &maintenance::RegistryAges {
                grace: registry_grace,
                upload_max_age,
            },
            json,
        ),
        Command::Serve(args) => serve::serve(&store, args),
    }
}
