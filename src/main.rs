//! The `layerstore` command line: a thin shell over [`layerstore::Store`].
//! Every command is one library call plus output formatting.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use layerstore::{Digest, ExportFormat, GcOptions, PutOptions, Store, VerifyOptions};

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
    },
    /// Write a layer's exact uncompressed tar (DiffID or compressed digest).
    Get {
        /// `sha256:<hex>` DiffID, or the digest of a compressed blob that was put.
        digest: String,
        /// Write to FILE (atomically) instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
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
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import an OCI image layout (directory or tar) or a `docker save` archive.
    Import {
        /// Layout directory, layout tar, or docker archive.
        path: PathBuf,
        /// Name for the image (overrides the names in the archive; single image only).
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List images.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an image's manifests, config and layers.
    Inspect {
        /// Image name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give an image another name.
    Tag {
        /// Existing name.
        src: String,
        /// New name.
        dst: String,
    },
    /// Remove an image name (layers only it used go too, unless put directly).
    Rm {
        /// Image names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Export images as an OCI layout directory or a docker archive.
    Export {
        /// Image names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "oci")]
        format: FormatArg,
        /// Output path (must not exist).
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// Create a container: a directory with the image's root filesystem.
    Create {
        /// Image name.
        image: String,
        /// Container name (default: a random id).
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List containers.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the directory of a container's root filesystem.
    Path {
        /// Container name.
        name: String,
    },
    /// List paths added (A), changed (C) and deleted (D) against the image.
    Diff {
        /// Container name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove containers (their images stay).
    Rm {
        /// Container names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Store a container's changes as a new layer and image NEWIMAGE.
    Commit {
        /// Container name.
        name: String,
        /// Name of the new image.
        new_image: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// OCI image layout directory.
    Oci,
    /// `docker save` tar archive.
    DockerArchive,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("layerstore: error: {}", error_message(&e));
            ExitCode::FAILURE
        }
    }
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

fn open_store(path: Option<PathBuf>) -> Result<Store> {
    let path = path
        .or_else(Store::default_path)
        .ok_or_else(|| anyhow!("no store directory: pass --store DIR or set LAYERSTORE_DIR"))?;
    Store::open(&path).with_context(|| format!("opening store {}", path.display()))
}

fn parse_digest(s: &str) -> Result<Digest> {
    Ok(Digest::parse(s)?)
}

fn run(cli: Cli) -> Result<()> {
    let store = open_store(cli.store)?;
    match cli.command {
        Command::Put {
            file,
            json,
            max_size,
        } => put(&store, &file, json, max_size),
        Command::Get { digest, output } => get(&store, &digest, output),
        Command::Ls { json } => ls(&store, json),
        Command::Rm { digests } => {
            let parsed = digests
                .iter()
                .map(|d| parse_digest(d))
                .collect::<Result<Vec<_>>>()?;
            // All or nothing: a bad argument removes no layer.
            for removed in store.remove_layers(&parsed).context("removing layers")? {
                println!("{removed}");
            }
            Ok(())
        }
        Command::Stat { json } => stat(&store, json),
        Command::Image(cmd) => image(&store, cmd),
        Command::Checkout { image, dir, json } => {
            let report = store
                .checkout(&image, &dir)
                .with_context(|| format!("checking out {image} into {}", dir.display()))?;
            for w in &report.warnings {
                eprintln!("layerstore: warning: {w}");
            }
            if json {
                return print_json(&report);
            }
            println!("{}", report.path.display());
            eprintln!(
                "checked out {} ({}): {} layer(s), {} entries, {} whiteout(s){}",
                report.image,
                report.manifest,
                report.layers,
                report.entries,
                report.whiteouts,
                if report.owners_applied {
                    ""
                } else {
                    " (ownership not applied: not root)"
                }
            );
            Ok(())
        }
        Command::Container(cmd) => container(&store, cmd),
        Command::Verify { full, repair, json } => {
            let report = store.verify(&VerifyOptions { full, repair })?;
            if json {
                print_json(&report)?;
            } else {
                for r in &report.repaired {
                    println!("repaired: {r}");
                }
                for w in &report.warnings {
                    println!("warning: {}: {}", w.subject, w.detail);
                }
                for p in &report.problems {
                    println!("problem: {}: {}", p.subject, p.detail);
                }
                for l in &report.lost {
                    println!("lost: layer {l}");
                }
                println!(
                    "checked {} pack(s), {} frame(s), {} chunk(s), {} layer(s){}: {}",
                    report.packs,
                    report.frames,
                    report.chunks,
                    report.layers,
                    if full {
                        format!(", {} read", human(report.bytes_verified))
                    } else {
                        String::new()
                    },
                    if report.is_clean() {
                        "ok".to_string()
                    } else {
                        format!("{} problem(s)", report.problems.len())
                    }
                );
            }
            if report.is_clean() {
                Ok(())
            } else {
                bail!("verify found {} problem(s)", report.problems.len())
            }
        }
        Command::Gc {
            dry_run,
            rewrite_below,
            json,
        } => {
            if !(0.0..=100.0).contains(&rewrite_below) {
                bail!("--rewrite-below must be between 0 and 100");
            }
            let report = store.gc(&GcOptions {
                dry_run,
                rewrite_below: rewrite_below / 100.0,
            })?;
            if json {
                return print_json(&report);
            }
            let verb = if dry_run { "would free" } else { "freed" };
            println!(
                "{verb} {} ({} -> {}): {} layer(s), {} chunk(s) ({} uncompressed), {} pack(s) deleted, {} rewritten, {} leftover file(s)",
                human(report.bytes_freed),
                human(report.bytes_before),
                human(report.bytes_after),
                report.layers_removed,
                report.chunks_removed,
                human(report.chunk_bytes_removed),
                report.packs_deleted,
                report.packs_rewritten,
                report.orphan_files_removed
            );
            for s in &report.skipped {
                eprintln!("layerstore: warning: pack skipped: {s}");
            }
            Ok(())
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn image(store: &Store, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Import { path, name, json } => {
            let report = store
                .import_image(&path, name.as_deref())
                .with_context(|| format!("importing {}", path.display()))?;
            if json {
                return print_json(&report);
            }
            for image in &report.images {
                println!("{}\t{}", image.name, image.digest);
            }
            eprintln!(
                "imported {} image(s) from {} ({}): {} layer blob(s), {} new layer(s), store grew by {}",
                report.images.len(),
                path.display(),
                report.format,
                report.layers,
                report.new_layers,
                human(report.added_bytes)
            );
            Ok(())
        }
        ImageCommand::Ls { json } => {
            let images = store.images()?;
            if json {
                return print_json(&images);
            }
            println!(
                "{:<40}  {:<71}  {:>6}  {:>10}  PLATFORMS",
                "NAME", "DIGEST", "LAYERS", "SIZE"
            );
            for i in images {
                println!(
                    "{:<40}  {:<71}  {:>6}  {:>10}  {}",
                    i.name,
                    i.digest.to_string(),
                    i.layers,
                    human(i.size),
                    i.platforms.join(",")
                );
            }
            Ok(())
        }
        ImageCommand::Inspect { name, json } => {
            let d = store.image(&name)?;
            if json {
                return print_json(&d);
            }
            println!("name        {}", d.name);
            println!("digest      {}", d.digest);
            println!("media type  {}", d.media_type);
            for m in &d.manifests {
                println!();
                println!("manifest    {}", m.digest);
                if let Some(p) = &m.platform {
                    println!("platform    {p}");
                }
                println!("config      {}", m.config);
                for (i, l) in m.layers.iter().enumerate() {
                    println!(
                        "layer {i:<3}   {}  {:>10}  shared with {} other image(s)",
                        l.diff_id,
                        human(l.size),
                        l.shared_with
                    );
                    println!(
                        "            blob {} {} ({})",
                        l.blob_digest,
                        human(l.blob_size),
                        l.media_type
                    );
                }
            }
            Ok(())
        }
        ImageCommand::Tag { src, dst } => {
            store
                .tag_image(&src, &dst)
                .with_context(|| format!("tagging {src} as {dst}"))?;
            Ok(())
        }
        ImageCommand::Rm { names } => {
            for name in names {
                store
                    .remove_image(&name)
                    .with_context(|| format!("removing image {name}"))?;
                println!("{name}");
            }
            Ok(())
        }
        ImageCommand::Export {
            names,
            format,
            output,
            json,
        } => {
            let format = match format {
                FormatArg::Oci => ExportFormat::Oci,
                FormatArg::DockerArchive => ExportFormat::DockerArchive,
            };
            let report = store
                .export_images(&names, format, &output)
                .with_context(|| format!("exporting to {}", output.display()))?;
            for image in &report.images {
                if image.digest_changed {
                    eprintln!(
                        "layerstore: {}: manifest digest changed from {} to {}: {}",
                        image.name,
                        image.stored_digest,
                        image.exported_digest,
                        image.note.as_deref().unwrap_or("rewritten")
                    );
                } else if let Some(note) = &image.note {
                    eprintln!("layerstore: {}: {note}", image.name);
                }
            }
            if json {
                return print_json(&report);
            }
            for image in &report.images {
                println!("{}\t{}", image.name, image.exported_digest);
            }
            Ok(())
        }
    }
}

fn container(store: &Store, cmd: ContainerCommand) -> Result<()> {
    match cmd {
        ContainerCommand::Create { image, name, json } => {
            let c = store
                .create_container(&image, name.as_deref())
                .with_context(|| format!("creating a container of {image}"))?;
            if json {
                return print_json(&c);
            }
            println!("{}", c.name);
            eprintln!("root filesystem: {} ({})", c.path.display(), c.sharing);
            Ok(())
        }
        ContainerCommand::Ls { json } => {
            let list = store.containers()?;
            if json {
                return print_json(&list);
            }
            println!(
                "{:<20}  {:<30}  {:<20}  {:<8}  PATH",
                "NAME", "IMAGE", "CREATED", "SHARING"
            );
            for c in list {
                println!(
                    "{:<20}  {:<30}  {:<20}  {:<8}  {}",
                    c.name,
                    c.image,
                    utc(c.created),
                    c.sharing,
                    c.path.display()
                );
            }
            Ok(())
        }
        ContainerCommand::Path { name } => {
            println!("{}", store.container(&name)?.path.display());
            Ok(())
        }
        ContainerCommand::Diff { name, json } => {
            let changes = store
                .container_diff(&name)
                .with_context(|| format!("diff of container {name}"))?;
            if json {
                return print_json(&changes);
            }
            for c in changes {
                let letter = match c.kind {
                    layerstore::ChangeKind::Added => 'A',
                    layerstore::ChangeKind::Changed => 'C',
                    layerstore::ChangeKind::Deleted => 'D',
                };
                println!("{letter} {}", c.path);
            }
            Ok(())
        }
        ContainerCommand::Rm { names } => {
            for name in &names {
                store.container(name)?;
            }
            for name in names {
                store
                    .remove_container(&name)
                    .with_context(|| format!("removing container {name}"))?;
                println!("{name}");
            }
            Ok(())
        }
        ContainerCommand::Commit {
            name,
            new_image,
            json,
        } => {
            let report = store
                .commit_container(&name, &new_image)
                .with_context(|| format!("committing container {name} as {new_image}"))?;
            if json {
                return print_json(&report);
            }
            println!("{}\t{}", report.image, report.manifest);
            eprintln!(
                "new layer {} ({}): {} added, {} changed, {} deleted; store grew by {}",
                report.layer,
                human(report.layer_size),
                report.added,
                report.changed,
                report.deleted,
                human(report.added_bytes)
            );
            Ok(())
        }
    }
}

fn progress_bar(total: Option<u64>, what: &str) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .ok()?
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}").ok()?,
        ),
    };
    bar.set_message(what.to_string());
    Some(bar)
}

fn put(store: &Store, file: &str, json: bool, max_size: Option<u64>) -> Result<()> {
    let (input, name, total): (Box<dyn io::Read + Send>, String, Option<u64>) = if file == "-" {
        (Box::new(io::stdin()), "stdin".to_string(), None)
    } else {
        let f = File::open(file).with_context(|| format!("cannot open {file}"))?;
        let meta = f
            .metadata()
            .with_context(|| format!("cannot stat {file}"))?;
        if meta.is_dir() {
            bail!("{file} is a directory, not a layer file");
        }
        (Box::new(f), file.to_string(), Some(meta.len()))
    };
    let bar = progress_bar(total, "put");
    let report = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let info = store.put_layer_with(
        input,
        &PutOptions {
            source_name: Some(name.clone()),
            max_uncompressed: max_size,
            progress: Some(&report),
        },
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let info = info.with_context(|| format!("put {name}"))?;
    if json {
        println!("{}", serde_json::to_string(&info)?);
    } else {
        println!("{}", info.digest);
        if let Some(c) = info.compressed_digest {
            println!("compressed ({}) {c}", info.compression.name());
        }
        println!(
            "{} uncompressed, {} chunks ({} new), store grew by {}{}",
            human(info.size),
            info.chunks,
            info.new_chunks,
            human(info.added_bytes),
            if info.new_layer {
                ""
            } else {
                " (layer was already stored)"
            }
        );
    }
    Ok(())
}

fn get(store: &Store, digest_text: &str, output: Option<PathBuf>) -> Result<()> {
    let digest = parse_digest(digest_text)?;
    let layer = store
        .layer(&digest)
        .with_context(|| format!("get {digest_text}"))?;
    if layer.digest != digest {
        eprintln!(
            "layerstore: {digest} is a compressed blob; writing its uncompressed layer {}",
            layer.digest
        );
    }
    let bar = progress_bar(Some(layer.size), "get");
    let report = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let result = match &output {
        Some(path) => store.get_layer_to_path(&digest, path, Some(&report)),
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write a tar archive to a terminal; use -o FILE or redirect");
            }
            let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let r = store.get_layer_with(&digest, &mut out, Some(&report));
            r.and_then(|info| {
                out.flush()
                    .map_err(|e| layerstore::Error::io("writing standard output", e))?;
                Ok(info)
            })
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    result.with_context(|| format!("get {digest_text}"))?;
    Ok(())
}

fn ls(store: &Store, json: bool) -> Result<()> {
    let layers = store.layers()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&layers)?);
        return Ok(());
    }
    println!(
        "{:<71}  {:>10}  {:>10}  {:>6}  {:<20}  PINNED",
        "DIGEST", "SIZE", "STORED", "SHARE", "CREATED"
    );
    for l in layers {
        let share = if l.size == 0 {
            0.0
        } else {
            100.0 * l.stored_share as f64 / l.size as f64
        };
        println!(
            "{:<71}  {:>10}  {:>10}  {:>5.1}%  {:<20}  {}",
            l.digest.to_string(),
            human(l.size),
            human(l.stored_share),
            share,
            utc(l.created),
            if l.pinned { "yes" } else { "no" }
        );
    }
    Ok(())
}

fn stat(store: &Store, json: bool) -> Result<()> {
    let s = store.stats()?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("store".into(), store.path().display().to_string().into());
            obj.insert("config".into(), serde_json::to_value(store.config())?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("store          {}", store.path().display());
    println!("layers         {}", s.layers);
    println!(
        "logical bytes  {} ({})",
        human(s.logical_bytes),
        s.logical_bytes
    );
    println!(
        "stored bytes   {} ({})",
        human(s.stored_bytes),
        s.stored_bytes
    );
    println!("  in packs     {}", human(s.pack_bytes));
    println!(
        "chunks         {} ({} distinct data)",
        s.chunks,
        human(s.unique_chunk_bytes)
    );
    println!("packs          {}", s.packs);
    println!("dedup ratio    {:.2}x", s.dedup_ratio);
    Ok(())
}

/// Parses sizes like `512`, `64K`, `10M`, `2G`, `1T` (powers of 1024).
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, ""));
    let base: u64 = digits.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let shift = match unit
        .trim_end_matches(['i', 'B', 'b'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("invalid size unit in {s:?}")),
    };
    base.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
fn utc(secs: i64) -> String {
    layerstore::rfc3339(secs)
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_string()
}
